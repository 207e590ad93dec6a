"""Cost ledger: what each rule of a run cost, and what a preset will cost before it runs.

Every model-running rule has a ``benchmark:`` file,
``benchmarks/results/<study>/<instance>/<stage>[/<job>].tsv`` (rule ``<study>_<stage>``), with
snakemake's wall seconds ``s``, ``cpu_time`` and peak resident memory ``max_rss`` (MB).
:func:`ledger` sums them per rule and per study instance of the config asked about (the
instances it declares, :mod:`interpflow.sizing`); a job of a rule that requests a GPU
(``resources: gpu=...``, :func:`gpu_rules`) counts its wall seconds as GPU seconds only when
its log says it ran on one (the last line :func:`interpflow.artifacts.log_to` writes).
:func:`estimate` prices the jobs of a plan (``snakemake -n``), per rule and instance, in GPU
and CPU hours, each row naming its rate's source: ``configured (rates.yaml)`` (a YAML
``{rule: seconds per job}``, e.g. measured on the cluster), ``measured on <model>`` (this
machine's benchmark files of instances on the same model), ``scaled from <model> (<size>) by
<what differs>`` (a rate measured on another model or token budget, by :data:`SCALE_RULE`),
or ``unknown`` (not guessed, not counted).

    python -m interpflow.ledger [--configfile P]     # this run's ledger, per instance and rule
    python -m interpflow.ledger judges               # judge calls, hits, low-mass NaNs, cost
    python -m interpflow.ledger estimate --configfile config/studies/tribunal_r1.yaml \\
        [--rates rates.yaml] [--target all]          # before running a preset
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from interpflow import forkserver
from interpflow.artifacts import DEVICE_LINE
from interpflow.cli import parser as cli_parser
from interpflow.sizing import (
    RULE_TOKENS,
    InstanceFacts,
    instance_facts,
    known_instances,
    load_config,
)

BENCHMARKS = Path("benchmarks/results")
LOGS = Path("logs")
RULES_DIR = Path("workflow/rules")
#: the line :func:`interpflow.artifacts.log_to` ends a job's log with
RAN_ON = re.compile("^" + re.escape(DEVICE_LINE).replace(r"\{device\}", r"(\w+)"), re.MULTILINE)


def gpu_rules(rules_dir: str | Path = RULES_DIR) -> set[str]:
    """Names of the rules whose ``resources:`` request a GPU (``gpu=<n>``, n >= 1, or
    ``gpu=model_gpus(...)``: the instance's model.gpus, at least 1)."""
    found = set()
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            # gpu=<n> with n >= 1, or a function of the instance (model_gpus: model.gpus >= 1)
            if re.search(r"^\s+gpu=\s*(?!0\s*,)\S", body, flags=re.MULTILINE):
                found.add(name)
    return found


def rule_names(rules_dir: str | Path = RULES_DIR) -> set[str]:
    """Names of the rules in ``workflow/rules/*.smk`` and the Snakefile beside ``workflow/``."""
    files = [*sorted(Path(rules_dir).glob("*.smk")), Path(rules_dir).parents[1] / "Snakefile"]
    text = "".join(f.read_text() for f in files if f.is_file())
    return set(re.findall(r"^(?:rule|checkpoint) (\w+):", text, flags=re.MULTILINE))


def latest_run(tsv: str | Path) -> dict[str, str] | None:
    """A snakemake ``benchmark:`` file's last row (its latest run) as {column: text}, or None
    when it holds no run."""
    lines = Path(tsv).read_text().strip().splitlines()
    if len(lines) < 2:
        return None
    return dict(zip(lines[0].split("\t"), lines[-1].split("\t")))


def job_of(parts: tuple[str, ...], rules: set[str]) -> tuple[str, str]:
    """(rule, job) of a benchmark file ``<study>/<instance>/<parts[2:]>``: the rule is the
    longest ``<study>_<part>_<part>...`` that is a rule of the workflow (``em/train/r1`` of
    inoculation: ``inoculation_em_train``, job ``r1``); a cross-study rule (atlas) files under
    its own name; with no rule known, ``<study>_<parts[2]>``."""
    study, rest = parts[0], parts[2:]
    if rest == (study,):
        return study, study
    for n in range(len(rest), 0, -1):
        rule = "_".join((study, *rest[:n]))
        if rule in rules:
            return rule, "/".join(rest[n:]) or rest[-1]
    return f"{study}_{rest[0]}", "/".join(rest[1:]) or rest[0]


def ran_on(log: str | Path) -> str | None:
    """``cuda`` or ``cpu``: where the job that wrote ``log`` ran (the line
    :func:`interpflow.artifacts.log_to` ends it with); None where the log is missing or has
    no such line (a job from before the line existed)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            found = RAN_ON.findall(fh.read().decode(errors="replace"))
    except OSError:
        return None
    return found[-1] if found else None


def ran_in_forkserver(log: str | Path) -> bool:
    """True where the job that wrote ``log`` ran in :mod:`interpflow.forkserver` (its
    benchmark's cpu_time and max_rss measured the client, not the job)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            return forkserver.WORKER_LINE.encode() in fh.read()
    except OSError:
        return False


def read_benchmarks(
    root: str | Path = BENCHMARKS, *, logs: str | Path = LOGS, rules: set[str] | None = None
) -> pl.DataFrame:
    """One row per benchmark file (its last row: the latest run of that job): ``study,
    instance, rule, job, wall_s, cpu_s, max_rss_mb, device``; ``device`` (cuda, cpu or null:
    not recorded) from the job's log, ``logs/<the same path>.log``; cpu_s and max_rss_mb are
    null for a job that ran in the fork server (:mod:`interpflow.forkserver`)."""
    rows = []
    root, rules = Path(root), rule_names() if rules is None else rules
    for tsv in sorted(root.rglob("*.tsv")):
        parts = tsv.relative_to(root).with_suffix("").parts
        value = latest_run(tsv) if len(parts) >= 3 else None
        if value is None:
            continue
        rule, job = job_of(parts, rules)
        log = Path(logs, *(parts[:2] if parts[2:] == parts[:1] else parts)).with_suffix(".log")
        measured = not ran_in_forkserver(log)
        rows.append(
            {
                "study": parts[0],
                "instance": parts[1],
                "rule": rule,
                "job": job,
                "wall_s": float(value["s"]),
                "cpu_s": _float(value.get("cpu_time")) if measured else None,
                "max_rss_mb": _float(value.get("max_rss")) if measured else None,
                "device": ran_on(log),
            }
        )
    return pl.DataFrame(rows, schema=BENCHMARK_SCHEMA)


BENCHMARK_SCHEMA = {
    "study": pl.String,
    "instance": pl.String,
    "rule": pl.String,
    "job": pl.String,
    "wall_s": pl.Float64,
    "cpu_s": pl.Float64,
    "max_rss_mb": pl.Float64,
    "device": pl.String,
}


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "-", "NA") else None
    except ValueError:
        return None


def only_instances(jobs: pl.DataFrame, *, keys: set[tuple[str, str]]) -> pl.DataFrame:
    """The rows of :func:`read_benchmarks` whose (study, instance) is in ``keys``
    (the keys of :func:`interpflow.sizing.instance_facts` of a config)."""
    schema = {"study": pl.String, "instance": pl.String}
    wanted = pl.DataFrame(sorted(keys), schema=schema, orient="row")
    return jobs.join(wanted, on=["study", "instance"], how="semi")


def ledger(jobs: pl.DataFrame, *, gpu: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per rule, per instance) sums of :func:`read_benchmarks` rows: ``jobs``, ``gpu_jobs``
    (those that ran on a GPU), ``wall_s``, ``cpu_s``, ``gpu_s`` (the wall seconds of the jobs
    of GPU rules that ran on a GPU: 0 on a CPU-only run, whose time is in ``cpu_s``) and the
    peak ``max_rss_mb``."""
    on_gpu = pl.col("rule").is_in(sorted(gpu)) & (pl.col("device") == "cuda").fill_null(False)
    tagged = jobs.with_columns(
        on_gpu=on_gpu, gpu_s=pl.when(on_gpu).then(pl.col("wall_s")).otherwise(0.0)
    )
    sums = [
        pl.len().alias("jobs"),
        pl.col("on_gpu").sum().alias("gpu_jobs"),
        pl.col("wall_s").sum(),
        pl.col("cpu_s").sum(),
        pl.col("gpu_s").sum(),
        pl.col("max_rss_mb").max(),
    ]
    per_rule = (
        tagged.group_by("study", "instance", "rule").agg(sums).sort("study", "instance", "rule")
    )
    per_instance = tagged.group_by("study", "instance").agg(sums).sort("study", "instance")
    return per_rule, per_instance


JUDGE_CACHE = Path("results/cache/judges.sqlite")


def judge_ledger(cache: str | Path = JUDGE_CACHE) -> pl.DataFrame:
    """Per job (its log path) and judge: the runs, requests, cache hits, calls made (HTTP
    attempts with retries, for the API backends), failed requests, low-mass NaNs (replies
    whose score the stage set to NaN because the number tokens held under ``min_mass`` of the
    probability; null where the stage scores no number tokens), tokens and cost (USD, at
    the judge's configured prices; null where none), from the ledger rows every
    :meth:`interpflow.judges.Judge.run` writes into the judge cache."""
    import sqlite3

    schema = {
        "job": pl.String,
        "judge": pl.String,
        "backend": pl.String,
        "model": pl.String,
        "runs": pl.Int64,
        "requests": pl.Int64,
        "cache_hits": pl.Int64,
        "calls": pl.Int64,
        "failed": pl.Int64,
        "low_mass": pl.Int64,
        "input_tokens": pl.Int64,
        "output_tokens": pl.Int64,
        "cost_usd": pl.Float64,
    }
    if not Path(cache).is_file():
        return pl.DataFrame(schema=schema)
    conn = sqlite3.connect(f"file:{cache}?mode=ro", uri=True)
    try:
        if not conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='ledger'"
        ).fetchone():
            return pl.DataFrame(schema=schema)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(ledger)")}
        low = "sum(n_low_mass)" if "n_low_mass" in columns else "NULL"  # a cache from before
        rows = conn.execute(
            "SELECT job, judge, backend, model, count(*), sum(n_requests), sum(n_cache_hits),"
            f" sum(n_calls), sum(n_failed), {low}, sum(input_tokens), sum(output_tokens),"
            " CASE WHEN count(cost_usd) = count(*) THEN sum(cost_usd) END"
            " FROM ledger GROUP BY job, judge, backend, model ORDER BY job, judge"
        ).fetchall()
    finally:
        conn.close()
    return pl.DataFrame(rows, schema=schema, orient="row")


#: the rule that prices a rule's jobs on one model from a rate measured on another
SCALE_RULE = (
    "scaled = measured s/job x (P_target / P_measured) x (T_target / T_measured); P: parameters"
    " (config.json or models.<name>.shape), T: the stage's token budget where it has one"
    " (interpflow.sizing.RULE_TOKENS)"
)


def measurements(
    jobs: pl.DataFrame, *, known: Mapping[tuple[str, str], InstanceFacts]
) -> pl.DataFrame:
    """Mean wall seconds per job (``seconds``), ``jobs`` and the ``devices`` they ran on, per
    ``rule, model, params, tokens`` (the instance's model, its parameter count and the rule's
    token budget), over the :func:`read_benchmarks` rows whose instance is ``known``
    (:func:`interpflow.sizing.known_instances`); the others are left out."""
    rows = []
    for r in jobs.iter_rows(named=True):
        facts = known.get((r["study"], r["instance"]))
        if facts is not None:
            tokens = facts.tokens.get(r["rule"])
            rows.append((r["rule"], facts.model, facts.params, tokens, r["wall_s"], r["device"]))
    names = ["rule", "model", "params", "tokens", "wall_s", "device"]
    types = [pl.String, pl.String, pl.Int64, pl.Int64, pl.Float64, pl.String]
    table = pl.DataFrame(rows, schema=dict(zip(names, types)), orient="row")
    return table.group_by("rule", "model", "params", "tokens").agg(
        seconds=pl.col("wall_s").mean(),
        jobs=pl.len(),
        devices=pl.col("device").drop_nulls().unique().sort().str.join("/"),
    )


def size_text(params: int | None) -> str:
    """``7.6B``, ``135M``, ``220K``; ``size unknown`` for None."""
    if params is None:
        return "size unknown"
    for scale, unit in ((1e9, "B"), (1e6, "M")):
        if params >= scale:
            return f"{params / scale:.{1 if unit == 'B' else 0}f}{unit}"
    return f"{params / 1e3:.0f}K"


def rate_for(
    *, rule: str, target: InstanceFacts | None, measured: pl.DataFrame
) -> tuple[float | None, str]:
    """(seconds per job, source) of ``rule`` on ``target``'s model from :func:`measurements`:
    the mean over instances on the same model (name and parameter count) at the same token
    budget, ``measured on <model>``; else the closest measurement scaled by
    :data:`SCALE_RULE` (the same model at another budget first, then the model nearest in
    parameters), ``scaled from <model> (<size>) by <what differs>``; else ``unknown``."""
    if target is None:
        return None, "unknown"
    best, t_target = None, target.tokens.get(rule)
    for m in measured.filter(rule=rule).iter_rows(named=True):
        same = m["model"] == target.model and m["params"] == target.params
        if not same and (m["params"] is None or target.params is None):
            continue
        p_ratio = 1.0 if same else target.params / m["params"]
        t_ratio = t_target / m["tokens"] if t_target and m["tokens"] else 1.0
        rank = (not same, t_ratio != 1.0, abs(math.log(p_ratio)), m["model"])
        if best is None or rank < best[0]:
            best = (rank, m["seconds"] * p_ratio * t_ratio, m)
    if best is None:
        return None, "unknown"
    (other, retoken, *_), rate, m = best
    notes = ", ".join(filter(None, [size_text(m["params"]), m["devices"]]))
    if not other and not retoken:
        return rate, f"measured on {m['model']} ({notes})"
    key = RULE_TOKENS.get(rule)
    how = [
        *(["params"] if other else []),
        *([f"tokens ({key})"] if key and (other or retoken) else []),
    ]
    return rate, f"scaled from {m['model']} ({notes}) by {' x '.join(how)}"


def estimate(
    plan: pl.DataFrame,
    *,
    gpu: set[str],
    known: Mapping[tuple[str, str], InstanceFacts],
    measured: pl.DataFrame,
    configured: Mapping[str, float] | None = None,
    rates_name: str = "rates.yaml",
) -> pl.DataFrame:
    """Hours a plan (:func:`plan_table`) will take, per rule and instance: ``jobs`` x the
    seconds per job, configured (``configured ({rates_name})``) where given, else
    :func:`rate_for`'s; ``source`` says which, ``unknown`` where neither has one (never
    guessed); ``gpu_hours`` for GPU rules, ``cpu_hours`` for the rest."""
    configured = configured or {}
    rows = []
    for p in plan.iter_rows(named=True):
        rule, target = p["rule"], known.get((p["study"], p["instance"]))
        if rule in configured:
            rate, source = float(configured[rule]), f"configured ({rates_name})"
        else:
            rate, source = rate_for(rule=rule, target=target, measured=measured)
        hours = None if rate is None else p["jobs"] * rate / 3600
        rows.append(
            {
                "rule": rule,
                "instance": p["instance"],
                "model": target.model if target else None,
                "size": size_text(target.params) if target else None,
                "jobs": p["jobs"],
                "seconds_per_job": rate,
                "source": source,
                "gpu_hours": hours if rule in gpu else 0.0,
                "cpu_hours": 0.0 if rule in gpu else hours,
            }
        )
    return pl.DataFrame(rows, schema=ESTIMATE_SCHEMA)


ESTIMATE_SCHEMA = {
    "rule": pl.String,
    "instance": pl.String,
    "model": pl.String,
    "size": pl.String,
    "jobs": pl.Int64,
    "seconds_per_job": pl.Float64,
    "source": pl.String,
    "gpu_hours": pl.Float64,
    "cpu_hours": pl.Float64,
}


def check_rates(
    rates: Any, *, rules: set[str], plan_rules: set[str], source: str
) -> dict[str, float]:
    """``rates`` (a rates file's ``{rule: seconds per job}``) as floats; a name that is no
    rule of the workflow is an error naming it, the closest rule names and the plan's rules."""
    if not isinstance(rates, Mapping):
        raise TypeError(f"{source}: a mapping of rule: seconds per job, not {type(rates).__name__}")
    for rule, value in rates.items():
        if str(rule) not in rules | plan_rules:
            close = difflib.get_close_matches(str(rule), sorted(rules | plan_rules), n=3)
            hint = f" (closest: {', '.join(close)})" if close else ""
            raise ValueError(
                f"{source}: {rule!r} is no rule of the workflow{hint}; this plan's rules: "
                f"{', '.join(sorted(plan_rules)) or 'none'}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{source}: {rule}: seconds per job is a number >= 0, not {value!r}")
    return {str(rule): float(value) for rule, value in rates.items()}


def job_counts(stdout: str) -> dict[str, int]:
    """Rule -> number of jobs (and ``total``), from the "Job stats" table snakemake prints."""
    if "Job stats:" not in stdout:
        raise ValueError(f"no job stats in the output:\n{stdout[-2000:]}")
    block = stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in block.strip().splitlines()[2:]]
    return {r[0]: int(r[1]) for r in rows if len(r) == 2}


#: a job as a dry run prints it: ``rule <name>:`` and its indented fields
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n?)*)", re.MULTILINE)


def plan_table(stdout: str) -> pl.DataFrame:
    """``rule, study, instance, jobs`` of the jobs a dry run (``snakemake -n``) prints: the
    study and instance from the job's benchmark path, else its rule and ``instance`` (or the
    atlas's ``model``) wildcard; ``""`` for a job of no instance. Checked against the job
    stats table (an error when they differ); no rows for "" (nothing to be done)."""
    schema = {"rule": pl.String, "study": pl.String, "instance": pl.String, "jobs": pl.Int64}
    if not stdout.strip():
        return pl.DataFrame(schema=schema)
    found: Counter[tuple[str, str, str]] = Counter()
    for rule, body in JOB.findall(stdout):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, flags=re.MULTILINE))
        bench = Path(fields.get("benchmark", ""))
        if bench.is_relative_to(BENCHMARKS) and len(bench.parts) > len(BENCHMARKS.parts) + 1:
            study, instance = bench.relative_to(BENCHMARKS).parts[:2]
        else:
            wildcards = dict(
                w.split("=", 1) for w in fields.get("wildcards", "").split(", ") if "=" in w
            )
            study = rule.split("_", 1)[0]
            instance = wildcards.get("instance", wildcards.get("model", ""))
        found[(rule, study, instance)] += 1
    counts = job_counts(stdout)
    counts.pop("total", None)
    per_rule: Counter[str] = Counter()
    for (rule, _, _), n in found.items():
        per_rule[rule] += n
    if dict(per_rule) != counts:
        raise ValueError(
            f"the dry run's jobs {dict(per_rule)} do not add up to its job stats {counts}"
        )
    rows = [(*key, n) for key, n in sorted(found.items())]
    return pl.DataFrame(rows, schema=schema, orient="row")


def dry_run(configfiles: list[str], targets: list[str]) -> str:
    """The output of ``snakemake -n <targets> --configfile <configfiles>`` (a dry run: no
    model, no API key needed) in the current directory; "" when nothing is to be done."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-n", *targets]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if "Nothing to be done" in proc.stdout + proc.stderr:
        return ""
    return proc.stdout


def _show(df: pl.DataFrame) -> str:
    with pl.Config(
        tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=100, float_precision=3
    ):
        return str(df)


def estimate_text(
    *,
    configfiles: list[str],
    targets: list[str],
    rates: str | None,
    benchmarks: str | Path = BENCHMARKS,
    logs: str | Path = LOGS,
) -> str:
    """The ``estimate`` command: plan the config, price each rule's jobs per instance
    (:func:`estimate`), one row each, and the totals with the sources they rest on."""
    stdout = dry_run(configfiles, targets)
    plan = plan_table(stdout)
    configured = {}
    if rates:
        import yaml

        configured = check_rates(
            yaml.safe_load(Path(rates).read_text()) or {},
            rules=rule_names(),
            plan_rules=set(plan["rule"]),
            source=f"rates file {rates}",
        )
    known = known_instances(configfiles=configfiles)
    jobs = read_benchmarks(benchmarks, logs=logs)
    table = estimate(
        plan,
        gpu=gpu_rules(),
        known=known,
        measured=measurements(jobs, known=known),
        configured=configured,
        rates_name=Path(rates).name if rates else "rates.yaml",
    )
    unknown = sorted(set(table.filter(pl.col("source") == "unknown")["rule"]))
    sources = table.group_by("source").agg(pl.len()).sort("source").iter_rows()
    return "\n".join(
        [
            _show(table),
            f"total: {table['gpu_hours'].sum():.2f} GPU hours, "
            f"{table['cpu_hours'].sum():.2f} CPU hours"
            + (f"; no rate for {unknown}: not counted" if unknown else ""),
            "rows per source: " + "; ".join(f"{n} {source}" for source, n in sources),
            SCALE_RULE,
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = cli_parser(module="interpflow.ledger", doc=__doc__)
    parser.add_argument("--configfile", nargs="*", default=[], help="presets, as for snakemake")
    parser.add_argument("--benchmarks", default=str(BENCHMARKS), help="benchmark files' root")
    sub = parser.add_subparsers(dest="command")
    est = sub.add_parser("estimate", help="GPU/CPU hours of a plan, before it runs")
    est.add_argument("--configfile", nargs="*", default=argparse.SUPPRESS, help="presets")
    est.add_argument("--target", nargs="*", default=["all"], help="targets (default: all)")
    est.add_argument("--rates", help="YAML {rule: seconds per job}, e.g. measured on the cluster")
    jl = sub.add_parser("judges", help="judge calls, cache hits, failures, low-mass NaNs, cost")
    jl.add_argument("--cache", default=str(JUDGE_CACHE), help="the judge cache (sqlite)")
    args = parser.parse_args(argv)
    try:
        if args.command == "estimate":
            print(
                estimate_text(
                    configfiles=args.configfile,
                    targets=args.target,
                    rates=args.rates,
                    benchmarks=args.benchmarks,
                )
            )
        elif args.command == "judges":
            print(_show(judge_ledger(args.cache)))
        else:
            instances, models = load_config(configfiles=args.configfile)
            keys = set(instance_facts(instances=instances, models=models))
            jobs = only_instances(read_benchmarks(args.benchmarks), keys=keys)
            per_rule, per_instance = ledger(jobs, gpu=gpu_rules())
            print(_show(per_instance))
            print(_show(per_rule))
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SystemExit(f"python -m interpflow.ledger: {e}") from None


if __name__ == "__main__":
    main()
