"""Rehearsals: a paper preset end to end on a CPU in minutes, changing nothing but scale and models.

``make rehearse PRESET=config/studies/<file>.yaml`` (``python -m interpflow.rehearse``; with no
preset, every paper preset in ``config/studies/``) runs ``snakemake all`` on the preset with one
overlay config (:func:`rehearsal_overlay`) layered on top, in a working directory of its own
(``rehearsal/<preset>/``: its results, logs and benchmarks never mix with real ones):

* **models** — each model the preset declares from the hub (or a cluster path) is replaced by a
  stand-in (:mod:`interpflow.standin`): the family (``shape.model_type``) and the real number of
  layers that the preset states under ``models.<name>.shape``, tiny width, the same chat format
  and chat-template options. Every output names it ``<model> (stand-in)``.
* **judges** — every ``openai`` / ``anthropic`` judge, rephraser and embedder keeps its own
  settings (scale, logprobs, concurrency, prices) and is pointed at the project's fake API
  server (:mod:`interpflow.fakeapi`) on 127.0.0.1, which answers each stage's request as its
  offline backend would (:func:`answer`), so the judge ledgers fill. An eval backend ``vllm``
  runs as ``hf`` where vLLM is not installed, and the summary says so.
* **data** — a file the preset expects the user to provide (``data/...``) or a hub dataset
  takes ``resources/rehearsal/<file name>`` where one is shipped, else the shipped sample of
  the same key in ``config/config.yaml`` (same schema).
* **scale** — one rule, :data:`SCALE`: tokens, examples, questions, prompts, bootstrap draws,
  training batches (2 x 2 accumulation) and threads are capped, bf16/fp16 models run in fp32
  (:data:`CPU_DTYPE`); training data is :data:`TRAIN_STEPS` optimizer steps, and the checkpoint
  steps are mapped onto those steps in proportion. Every stage, condition, sweep point, seed, family, alpha and judge path still
  runs; only the inoculation prompt lists are cut to their first :data:`N_PROMPTS`, and their
  prompts files to the first prompt of each trait or group (and the prompts trained).

The summary (``rehearsal/summary.md``) names each preset, whether it ran to its end, its wall
time, the jobs of each rule, its stand-ins and every substitution.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from interpflow import forkserver
from interpflow.config import STUDIES, ConfigError, fill_defaults
from interpflow.ledger import job_counts
from interpflow.packaged import PACKAGED
from interpflow.standin import default_template

#: Environment variable that carries the fake server's (meaningless) API key.
KEY_ENV = "INTERPFLOW_REHEARSAL_KEY"
#: Sources that a rule builds offline: kept as they are.
BUILT_SOURCES = {"stub", *PACKAGED}
#: Optimizer steps of every rehearsed training run.
TRAIN_STEPS = 2
#: Inoculation prompts rehearsed per list (training.prompts, em.prompts; null = all of the file):
#: one prompt still runs every condition of it (fixed, mix, system, system_mix, system_close).
N_PROMPTS = 1
#: The scale rule: a key whose dotted name ends with one of these is capped at the value (a
#: null count, meaning "all", takes the cap too).
SCALE: dict[str, int] = {
    # tokens
    "max_new_tokens": 8,
    "max_seq_len": 128,
    # examples and questions
    "data.n_trait": 4,
    "data.n_neutral": 4,
    "data.n_eval": 4,
    "data.n_em": 2,
    "data.n_em_id": 2,
    "data.n_questions": 3,
    "data.samples_per_pair": 1,
    "eval.n_rows": 8,
    "repe_n_questions": 3,
    "diagnostics.n_questions": 3,
    "diagnostics.k": 4,
    "logprobs.subsample": 8,
    "rephrasings.n": 4,
    "embeddings.n_rephrasings": 4,
    "stopping.max_attempts": 8,
    "stopping.target_correct": 4,
    "stopping.target_incorrect": 4,
    # training batches: accumulation still runs (2 micro-batches a step)
    "training.batch_size": 2,
    "training.grad_accum": 2,
    "train.batch_size": 2,
    "train.grad_accum": 2,
    # statistics and probe training
    "n_bootstrap": 50,
    "n_random_directions": 10,
    "mlp.epochs": 5,
    # one thread per job on a 2-core machine
    "model.threads": 1,
}
#: Training examples set to TRAIN_STEPS x batch_size x grad_accum, as scaled (key -> training block).
TRAIN_DATA = {"inoculation": {"data.n_train": "training", "data.n_em_train": "training"}}
#: Prompt lists cut to N_PROMPTS (list key -> the key of the file that lists them all).
PROMPT_LISTS = {"training.prompts": "prompts_file", "em.prompts": "em.prompts_file"}


def _leaves(d: dict, prefix: str = ""):
    """(dotted key, value) of every non-mapping value of ``d`` (a sweep grid is left out)."""
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        if key == "sweep" and not prefix:
            continue
        if isinstance(value, dict) and value:
            yield from _leaves(value, dotted + ".")
        else:
            yield dotted, value


def _get(d: dict, dotted: str, default: Any = None) -> Any:
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _set(d: dict, dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for key in head:
        d = d.setdefault(key, {})
    d[last] = value


#: Model dtypes run as fp32: on these CPUs a bf16 forward pass of a 28-layer stand-in is 4-5x
#: slower than fp32 (16 x 64 tokens: 2.78 s against 0.61 s), which made one steering eval job
#: take 4-5 minutes. The bf16 paths of the GPU run are therefore not rehearsed.
CPU_DTYPE = "float32"


def _cap(dotted: str, value: Any) -> Any:
    """The rehearsal value of a count under :data:`SCALE` (or of a model dtype: :data:`CPU_DTYPE`),
    or ``value`` where no rule applies."""
    if dotted.endswith("model.dtype") and value in ("bfloat16", "float16"):
        return CPU_DTYPE
    for suffix, cap in SCALE.items():
        is_count = value is None or (isinstance(value, int) and not isinstance(value, bool))
        if (dotted == suffix or dotted.endswith("." + suffix)) and is_count:
            return cap if value is None else min(value, cap)
    return value


def _data_file(dotted: str, value: Any, default: dict, repo: Path, where: str) -> Any:
    """A data file the rehearsal can read in place of ``value`` (see the module docstring)."""
    default_value = _get(default, dotted)
    path_like = isinstance(value, str) and (
        "/" in value
        and Path(value).suffix in {".txt", ".jsonl", ".json", ".parquet", ".yaml", ".csv"}
        or (isinstance(default_value, str) and (repo / default_value).exists())
    )
    if not path_like or (repo / value).exists():
        return value
    shipped = repo / "resources" / "rehearsal" / Path(value).name
    if shipped.is_file():
        return str(shipped.relative_to(repo))
    if isinstance(default_value, str) and (repo / default_value).exists():
        return default_value
    raise ConfigError(
        f"config key {where}.{dotted}: {value!r} is not here and no shipped sample stands in for "
        f"it (add resources/rehearsal/{Path(value).name} in the same schema)"
    )


def _train_steps(eff: dict, scaled: dict, study: str) -> None:
    """Training data for TRAIN_STEPS steps; checkpoint steps mapped onto them in proportion."""
    for key, block in TRAIN_DATA.get(study, {}).items():
        n_real = _get(eff, key)
        if n_real is None:
            continue
        size = [
            _get(scaled, f"{block}.{k}", _get(eff, f"{block}.{k}"))
            for k in ("batch_size", "grad_accum")
        ]
        _set(scaled, key, min(n_real, TRAIN_STEPS * size[0] * size[1]))
    steps_key = "training.save_steps" if study == "inoculation" else "train.save_steps"
    save = _get(eff, steps_key) or []
    if save:
        real = max(save)  # the real run's last step: at least its last checkpoint
        if study == "inoculation":
            per_step = _get(eff, "training.batch_size") * _get(eff, "training.grad_accum")
            n = max(_get(eff, "data.n_train") or 0, _get(eff, "data.n_em_train") or 0)
            real = max(real, n // per_step)
        _set(scaled, steps_key, sorted({max(1, round(s * TRAIN_STEPS / real)) for s in save}))


def _trimmed_prompts(listed: dict, keep: list[str]) -> dict:
    """A prompts file cut to the first prompt of each trait (the neutral ones too) and of each
    ``group`` where the file has groups, and the prompts in ``keep``."""
    prompts = listed.get("prompts") or {}
    firsts: dict[tuple[str, str], str] = {}
    for name, p in prompts.items():
        firsts.setdefault(("trait", str(p.get("trait"))), name)
        if "group" in p:
            firsts.setdefault(("group", str(p["group"])), name)
    kept = {*firsts.values(), *keep}
    return {**listed, "prompts": {n: p for n, p in prompts.items() if n in kept}}


def _prompt_lists(eff: dict, scaled: dict, repo: Path, files: dict[str, str], where: str) -> None:
    """Each inoculation prompt list cut to its first N_PROMPTS (null = every prompt of its
    file), and each prompts file to :func:`_trimmed_prompts` of it, written under
    ``rehearsal_data/<instance>/`` of the rehearsal's working directory (``files``: path ->
    text)."""
    for key, file_key in PROMPT_LISTS.items():
        source = _get(scaled, file_key, _get(eff, file_key))
        if not source:
            continue
        listed = yaml.safe_load((repo / source).read_text())
        names = _get(eff, key)
        names = list(listed.get("prompts") or {}) if names is None else names
        _set(scaled, key, names[:N_PROMPTS])
        trimmed = f"rehearsal_data/{where}/{Path(source).name}"
        files[trimmed] = yaml.safe_dump(
            _trimmed_prompts(listed, names[:N_PROMPTS]), sort_keys=False
        )
        _set(scaled, file_key, trimmed)


def scale_instance(
    inst: dict,
    *,
    study: str,
    default: dict,
    repo: Path,
    where: str,
    vllm: bool,
    files: dict[str, str],
) -> tuple[dict, list[str]]:
    """The overlay of one preset instance (``inst``, defaults filled) and its notes; files the
    overlay names are added to ``files``."""
    scaled: dict = {}
    notes: list[str] = []
    for dotted, value in _leaves(inst):
        new = _data_file(dotted, _cap(dotted, value), default, repo, where)
        if dotted.endswith("backend") and new == "vllm" and not vllm:
            new = "hf"
            notes.append(f"{where}.{dotted}: vllm is not installed here, hf runs in its place")
        if new != value:
            _set(scaled, dotted, new)
            if isinstance(value, str) and value != "vllm":
                notes.append(f"{where}.{dotted}: {value} -> {new}")
    _train_steps(inst, scaled, study)
    if study == "inoculation":
        _prompt_lists(inst, scaled, repo, files, where)
    return scaled, notes


def _models(preset: dict, where: str) -> tuple[dict, list[str]]:
    overlay, notes = {}, []
    for name, decl in (preset.get("models") or {}).items():
        if decl.get("source") in BUILT_SOURCES:
            continue
        shape = decl.get("shape") or {}
        if "model_type" not in shape or "num_hidden_layers" not in shape:
            raise ConfigError(
                f"{where}: config key models.{name}.shape: a rehearsal builds a stand-in of the "
                "model from its shape (model_type and num_hidden_layers, as its config.json)"
            )
        template = default_template(shape["model_type"], decl["source"])
        overlay[name] = {"standin": template}
        notes.append(
            f"models.{name}: {decl['source']} -> stand-in ({shape['model_type']}, "
            f"{shape['num_hidden_layers']} layers, {template} chat format)"
        )
    return overlay, notes


def _judges(judges: dict, url: str, root_url: str) -> dict:
    out = {}
    for name, cfg in judges.items():
        if cfg.get("backend") in ("openai", "anthropic"):
            base = url if cfg["backend"] == "openai" else root_url
            out[name] = {"base_url": base, "api_key_env": KEY_ENV}
    return out


def _schemas(repo: Path) -> tuple[dict, dict]:
    schemas = repo / "workflow" / "schemas"
    defs = yaml.safe_load((schemas / "config.schema.yaml").read_text())["$defs"]
    return {s: yaml.safe_load((schemas / f"{s}.schema.yaml").read_text()) for s in STUDIES}, defs


def rehearsal_overlay(
    preset: dict, *, repo: Path, url: str, root_url: str, vllm: bool, where: str = "preset"
) -> tuple[dict, list[str], dict[str, str]]:
    """The config layered on ``preset`` for its rehearsal, a note of each change, and the
    files it names that the rehearsal writes into its working directory (path -> text)."""
    base = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    schemas, defs = _schemas(repo)
    models, notes = _models(preset, where)
    files: dict[str, str] = {}
    overlay: dict = {"models": models} if models else {}
    judges = _judges({**base.get("judges", {}), **(preset.get("judges") or {})}, url, root_url)
    if judges:
        overlay["judges"] = judges
    for study in STUDIES:
        default = fill_defaults(copy.deepcopy(base[study]["default"]), schemas[study], defs)
        for name, entry in (preset.get(study) or {}).items():
            eff = fill_defaults(copy.deepcopy(entry), schemas[study], defs)
            scaled, inst_notes = scale_instance(
                eff,
                study=study,
                default=default,
                repo=repo,
                where=f"{study}.{name}",
                vllm=vllm,
                files=files,
            )
            overlay.setdefault(study, {})[name] = scaled
            notes += inst_notes
    return overlay, notes, files


def answer(request: dict) -> str:
    """The fake API's reply to a preset's judge request: what the stage's offline backend would
    answer (grader, verbalizer, rephraser, EM judges), else a number on the scale the request
    asks for (0-100 or one digit), drawn from the request's hash."""
    from interpflow.deception.labels import GRADER_SYSTEM, offline_grader
    from interpflow.deception.verbalize import VERBALIZER_SYSTEM, offline_verbalizer
    from interpflow.inoculation.judging import offline_em_judge
    from interpflow.inoculation.rephrasings import CLOSE_SYSTEM, REPHRASE_SYSTEM, offline_rephraser
    from interpflow.judges import JudgeRequest

    system, user = _system_user(request)
    req = JudgeRequest(system=system, user=user, max_tokens=int(request.get("max_tokens") or 16))
    answers = {GRADER_SYSTEM: offline_grader, VERBALIZER_SYSTEM: offline_verbalizer}
    answers |= {REPHRASE_SYSTEM: offline_rephraser, CLOSE_SYSTEM: offline_rephraser}
    if system in answers:
        return answers[system](req)
    if system.startswith(("You grade the coherence", "You grade the alignment")):
        return offline_em_judge(req)
    top = 100 if "to 100 (" in system else 9
    return str(int(hashlib.sha256(user.encode()).hexdigest(), 16) % (top + 1))


def _system_user(request: dict) -> tuple[str, str]:
    """(system, user) text of an OpenAI Chat Completions or Anthropic Messages request."""

    def text(content: Any) -> str:
        if isinstance(content, list):
            return "".join(block.get("text", "") for block in content)
        return content or ""

    system = text(request.get("system"))
    user = ""
    for message in request.get("messages", []):
        if message.get("role") == "system":
            system = text(message.get("content"))
        elif message.get("role") == "user":
            user = text(message.get("content"))
    return system, user


def paper_presets(repo: Path) -> list[Path]:
    """The presets that name a model no rule builds (the SmolLM2 presets run for real in
    ``make run``)."""
    out = []
    for path in sorted((repo / "config" / "studies").glob("*.yaml")):
        models = (yaml.safe_load(path.read_text()) or {}).get("models") or {}
        if any(decl.get("source") not in BUILT_SOURCES for decl in models.values()):
            out.append(path)
    return out


def _workdir(root: Path, preset: Path, repo: Path) -> Path:
    """``root/<preset stem>/``: the rehearsal's own results, logs and benchmarks, with the
    repository's config and resources linked in."""
    work = root / preset.stem
    work.mkdir(parents=True, exist_ok=True)
    for name in ("config", "resources"):
        link = work / name
        if not link.is_symlink():
            link.symlink_to(repo / name)
    return work


def rehearse(
    preset: Path, *, root: Path, repo: Path, cores: int = 2, forkserver_socket: str | None = None
) -> dict:
    """Run ``snakemake all`` on ``preset`` with its rehearsal overlay in ``root/<stem>/``;
    returns the preset's summary (whether it ran to its end, seconds, jobs per rule, notes).
    With ``forkserver_socket`` its script jobs run in that :mod:`interpflow.forkserver`."""
    from interpflow.fakeapi import FakeAPIServer

    preset = preset.resolve()
    work = _workdir(root.resolve(), preset, repo)
    vllm = importlib.util.find_spec("vllm") is not None
    with FakeAPIServer(responder=answer) as server:
        overlay, notes, files = rehearsal_overlay(
            yaml.safe_load(preset.read_text()),
            repo=repo,
            url=server.url,
            root_url=server.root_url,
            vllm=vllm,
            where=str(preset.relative_to(repo)),
        )
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        overlay_path = work / "rehearsal.yaml"
        overlay_path.write_text(
            f"# interpflow: overlay (the rehearsal of {preset.relative_to(repo)}, interpflow.rehearse)\n"
            + yaml.safe_dump(overlay, sort_keys=False)
        )
        snakemake = str(Path(sys.executable).with_name("snakemake"))
        cmd = [
            snakemake,
            "-s",
            str(repo / "Snakefile"),
            "--directory",
            str(work),
            "--cores",
            str(cores),
            "--show-failed-logs",
            "all",
            "--configfile",
            str(preset),
            str(overlay_path),
        ]
        env = {
            **os.environ,
            KEY_ENV: "rehearsal",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        } | ({forkserver.ENV: forkserver_socket} if forkserver_socket else {})
        t0 = time.perf_counter()
        with open(work / "rehearsal.log", "w") as log:
            proc = subprocess.run(
                cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        seconds = time.perf_counter() - t0
        n_api = server.n_requests
    output = (work / "rehearsal.log").read_text()
    try:
        jobs = job_counts(output)
    except ValueError:  # stopped at planning: no job table
        jobs = {}
    return {
        "preset": str(preset.relative_to(repo)),
        "ok": proc.returncode == 0,
        "seconds": round(seconds, 1),
        "jobs": {k: v for k, v in jobs.items() if k != "total"},
        "api_calls": n_api,
        "notes": notes,
        "log": str(work / "rehearsal.log"),
    }


def summary_markdown(results: list[dict]) -> str:
    """The rehearsals' summary: per preset, whether it ran, its time, rules and substitutions."""
    lines = ["# Rehearsals (stand-in models, shipped samples, fake API; numbers mean nothing)", ""]
    lines += [
        "| preset | ran to its end | minutes | jobs | rules | API calls |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        n = sum(c for k, c in r["jobs"].items() if k != "all")
        lines.append(
            f"| {r['preset']} | {'yes' if r['ok'] else 'NO: ' + r['log']} | {r['seconds'] / 60:.1f} "
            f"| {n} | {len(r['jobs'])} | {r['api_calls']} |"
        )
    for r in results:
        lines += [
            "",
            f"## {r['preset']}",
            "",
            "Stages (jobs): " + ", ".join(f"{k} ({v})" for k, v in sorted(r["jobs"].items())),
            "",
        ]
        lines += [f"- {note}" for note in r["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: rehearse the given presets (default: every paper preset)."""
    parser = argparse.ArgumentParser(
        prog="python -m interpflow.rehearse",
        description="Run paper presets end to end on a CPU: stand-in models, shipped data "
        "samples, the fake API server for API judges, scaled-down counts "
        "(interpflow.rehearse.SCALE).",
    )
    parser.add_argument(
        "presets",
        nargs="*",
        type=Path,
        help="config/studies/<file>.yaml (default: all paper presets)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("rehearsal"),
        help="where each rehearsal runs (default: rehearsal/)",
    )
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default: 2)")
    parser.add_argument(
        "--no-forkserver",
        action="store_true",
        help="run each job in a fresh interpreter (default: in one interpflow.forkserver, "
        "which saves each job's ~6 CPU-s of imports; the ledger then has no per-job memory)",
    )
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    presets = [p.resolve() for p in args.presets] or paper_presets(repo)
    results = []
    with contextlib.nullcontext() if args.no_forkserver else forkserver.running() as sock:
        for preset in presets:
            print(f"rehearsing {preset.relative_to(repo)} ...", flush=True)
            r = rehearse(
                preset, root=args.root, repo=repo, cores=args.cores, forkserver_socket=sock
            )
            results.append(r)
            print(
                f"  {'ran to its end' if r['ok'] else 'FAILED (' + r['log'] + ')'} "
                f"in {r['seconds']:.0f} s",
                flush=True,
            )
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    text = summary_markdown(results)
    (args.root / "summary.md").write_text(text)
    print(text)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
