"""Cost ledger: what each rule of a run cost, and what a preset will cost before it runs.

Every model-running rule has a ``benchmark:`` file,
``benchmarks/results/<study>/<instance>/<stage>[/<job>].tsv`` (rule ``<study>_<stage>``), with
snakemake's wall seconds ``s``, ``cpu_time`` and peak resident memory ``max_rss`` (MB).
:func:`ledger` sums them per rule and per study instance; a rule that requests a GPU
(``resources: gpu=...`` in ``workflow/rules/*.smk``, :func:`gpu_rules`) counts its wall seconds
as GPU seconds too. :func:`estimate` turns the job counts of a plan (``snakemake -n``) into
GPU and CPU hours from per-rule rates: configured ones (a YAML ``{rule: seconds per job}``,
e.g. measured on the cluster before) or, where none is configured, the mean of this
machine's benchmark files; a rule with neither is listed as unknown, not guessed.

    python -m interpflow.ledger                      # this run's ledger, per instance and rule
    python -m interpflow.ledger judges               # judge calls, hits, low-mass NaNs, cost
    python -m interpflow.ledger estimate --configfile config/studies/tribunal_r1.yaml \\
        [--rates rates.yaml] [--target all]          # before running a preset
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import polars as pl

BENCHMARKS = Path("benchmarks/results")
RULES_DIR = Path("workflow/rules")


def gpu_rules(rules_dir: str | Path = RULES_DIR) -> set[str]:
    """Names of the rules whose ``resources:`` request a GPU (``gpu=<n>``, n >= 1)."""
    found = set()
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            if re.search(r"^\s+gpu=\s*[1-9]", body, flags=re.MULTILINE):
                found.add(name)
    return found


def latest_run(tsv: str | Path) -> dict[str, str] | None:
    """A snakemake ``benchmark:`` file's last row (its latest run) as {column: text}, or None
    when it holds no run."""
    lines = Path(tsv).read_text().strip().splitlines()
    if len(lines) < 2:
        return None
    return dict(zip(lines[0].split("\t"), lines[-1].split("\t")))


def read_benchmarks(root: str | Path = BENCHMARKS) -> pl.DataFrame:
    """One row per benchmark file (its last row: the latest run of that job): ``study,
    instance, rule, job, wall_s, cpu_s, max_rss_mb``."""
    rows = []
    root = Path(root)
    for tsv in sorted(root.rglob("*.tsv")):
        parts = tsv.relative_to(root).with_suffix("").parts
        if len(parts) < 3:
            continue
        value = latest_run(tsv)
        if value is None:
            continue
        rows.append(
            {
                "study": parts[0],
                "instance": parts[1],
                # a study's rules are <study>_<stage>; a cross-study rule (atlas) is its name
                "rule": parts[0] if parts[2] == parts[0] else f"{parts[0]}_{parts[2]}",
                "job": "/".join(parts[3:]) or parts[2],
                "wall_s": float(value["s"]),
                "cpu_s": _float(value.get("cpu_time")),
                "max_rss_mb": _float(value.get("max_rss")),
            }
        )
    schema = {
        "study": pl.String,
        "instance": pl.String,
        "rule": pl.String,
        "job": pl.String,
        "wall_s": pl.Float64,
        "cpu_s": pl.Float64,
        "max_rss_mb": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "-", "NA") else None
    except ValueError:
        return None


def ledger(jobs: pl.DataFrame, gpu: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per rule, per instance) sums of :func:`read_benchmarks` rows: ``jobs``, ``wall_s``,
    ``cpu_s``, ``gpu_s`` (wall seconds of GPU rules) and the peak ``max_rss_mb``."""
    tagged = jobs.with_columns(
        gpu_s=pl.when(pl.col("rule").is_in(sorted(gpu))).then(pl.col("wall_s")).otherwise(0.0)
    )
    sums = [
        pl.len().alias("jobs"),
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


def measured_rates(jobs: pl.DataFrame) -> dict[str, float]:
    """Mean wall seconds per job of each rule, over the benchmark files present."""
    if jobs.height == 0:
        return {}
    return dict(jobs.group_by("rule").agg(pl.col("wall_s").mean()).iter_rows())


def estimate(
    job_counts: dict[str, int],
    gpu: set[str],
    configured: dict[str, float] | None = None,
    measured: dict[str, float] | None = None,
) -> pl.DataFrame:
    """Hours a plan will take, per rule: ``jobs`` × the rule's seconds per job (``configured``
    first, else ``measured``; ``source`` says which, ``unknown`` where neither has it), as
    ``gpu_hours`` for GPU rules and ``cpu_hours`` for the rest."""
    configured, measured = configured or {}, measured or {}
    rows = []
    for rule, n in sorted(job_counts.items()):
        if rule in configured:
            rate, source = float(configured[rule]), "configured"
        elif rule in measured:
            rate, source = float(measured[rule]), "measured"
        else:
            rate, source = None, "unknown"
        hours = None if rate is None else n * rate / 3600
        rows.append(
            {
                "rule": rule,
                "jobs": n,
                "seconds_per_job": rate,
                "source": source,
                "gpu_hours": hours if rule in gpu else 0.0,
                "cpu_hours": 0.0 if rule in gpu else hours,
            }
        )
    schema = {
        "rule": pl.String,
        "jobs": pl.Int64,
        "seconds_per_job": pl.Float64,
        "source": pl.String,
        "gpu_hours": pl.Float64,
        "cpu_hours": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def job_counts(stdout: str) -> dict[str, int]:
    """Rule -> number of jobs (and ``total``), from the "Job stats" table snakemake prints."""
    if "Job stats:" not in stdout:
        raise ValueError(f"no job stats in the output:\n{stdout[-2000:]}")
    block = stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in block.strip().splitlines()[2:]]
    return {r[0]: int(r[1]) for r in rows if len(r) == 2}


def plan_jobs(configfiles: list[str], targets: list[str]) -> dict[str, int]:
    """Job counts of ``snakemake -n <targets> --configfile <configfiles>`` (a dry run: no
    model, no API key needed) in the current directory."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-n", *targets]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if "Nothing to be done" in proc.stdout + proc.stderr:
        return {}
    counts = job_counts(proc.stdout)
    counts.pop("total", None)
    return counts


def _show(df: pl.DataFrame) -> str:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, float_precision=3):
        return str(df)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m interpflow.ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    est = sub.add_parser("estimate", help="GPU/CPU hours of a plan, before it runs")
    est.add_argument("--configfile", nargs="*", default=[], help="presets, as for snakemake")
    est.add_argument("--target", nargs="*", default=["all"], help="targets (default: all)")
    est.add_argument("--rates", help="YAML {rule: seconds per job}, e.g. measured on the cluster")
    jl = sub.add_parser("judges", help="judge calls, cache hits, failures, low-mass NaNs, cost")
    jl.add_argument("--cache", default=str(JUDGE_CACHE), help="the judge cache (sqlite)")
    parser.add_argument("--benchmarks", default=str(BENCHMARKS), help="benchmark files' root")
    args = parser.parse_args(argv)
    gpu = gpu_rules()
    jobs = read_benchmarks(args.benchmarks)
    if args.command == "estimate":
        import yaml

        configured = yaml.safe_load(Path(args.rates).read_text()) if args.rates else {}
        plan = estimate(
            plan_jobs(args.configfile, args.target), gpu, configured, measured_rates(jobs)
        )
        print(_show(plan))
        unknown = plan.filter(pl.col("source") == "unknown")["rule"].to_list()
        print(
            f"total: {plan['gpu_hours'].sum():.2f} GPU hours, {plan['cpu_hours'].sum():.2f} CPU "
            f"hours (rates: {args.rates or 'none configured'}; measured here where not)"
            + (f"; no rate for {unknown}: not counted" if unknown else "")
        )
        return
    if args.command == "judges":
        print(_show(judge_ledger(args.cache)))
        return
    per_rule, per_instance = ledger(jobs, gpu)
    print(_show(per_instance))
    print(_show(per_rule))


if __name__ == "__main__":
    main()
