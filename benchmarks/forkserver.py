"""Snakemake script jobs in the fork server against fresh interpreters, on a preset rehearsal.

Each ``script:`` job of a fresh interpreter imports torch, transformers, peft and scikit-learn
(~6 CPU-seconds) before its own work; :mod:`interpflow.forkserver` imports them once and forks
each job. This benchmark rehearses one paper preset (:mod:`interpflow.rehearse`, stand-in
models on this CPU) both ways, interleaved over ``--repeats``, each in a fresh directory, and
checks that both produce the same outputs (:mod:`interpflow.output_hashes`; the judge cache
aside: its keys hold the fake API server's port, which differs between any two rehearsals). Reported: the
median seconds of each and the median per-repeat ratio plain / forkserver.

Goal: the fork server runs the rehearsal at least ``--goal`` times as fast (default 1.5) with
byte-identical outputs. Exit 1 when missed.

    .venv/bin/python benchmarks/forkserver.py [--preset config/studies/<file>.yaml] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from _bench import Goal, interleave, load_average, load_line, median, per_repeat, report

from interpflow import forkserver, output_hashes
from interpflow.rehearse import rehearse

REPO = Path(__file__).resolve().parents[1]


def run_once(
    preset: Path, root: Path, label: str, outputs: list[dict], socket: str | None
) -> float:
    """Seconds of one rehearsal of ``preset`` in a fresh ``root/<label>-<n>``; its output
    manifest appended to ``outputs``."""
    work_root = root / f"{label}-{len(outputs)}"
    if socket:
        os.environ[forkserver.ENV] = socket
    try:
        result = rehearse(preset, root=work_root, repo=REPO)
    finally:
        os.environ.pop(forkserver.ENV, None)
    if not result["ok"]:
        raise SystemExit(f"the {label} rehearsal failed: see {result['log']}")
    results = Path(result["log"]).parent / "results"
    manifest = output_hashes.manifest(results, str(results.parent))
    outputs.append({k: v for k, v in manifest.items() if not k.startswith("cache/")})
    return result["seconds"]


SYNTHETIC_JOB = """import interpflow  # hands this job to the fork server when one is named
import sklearn.linear_model
import torch
import transformers.modeling_utils

torch.manual_seed(int(snakemake.wildcards.i))
x = torch.randn(64, 64)
with open(snakemake.output[0], "w") as fh:
    fh.write(f"{(x @ x).abs().sum().item():.4f} {transformers.modeling_utils.__name__}\\n")
"""


def run_synthetic(
    n_jobs: int, root: Path, label: str, outputs: list[dict], socket: str | None
) -> float:
    """Seconds of a generated workflow of ``n_jobs`` script jobs (each imports torch,
    transformers and scikit-learn, then multiplies a seeded matrix) in a fresh directory;
    its outputs' contents appended to ``outputs``."""
    import subprocess
    import sys
    import time

    work = root / f"{label}-{len(outputs)}"
    work.mkdir(parents=True)
    (work / "job.py").write_text(SYNTHETIC_JOB)
    (work / "Snakefile").write_text(
        f"rule all:\n    input: expand('out/{{i}}.txt', i=range({n_jobs}))\n\n"
        "rule job:\n    output: 'out/{i}.txt'\n    script: 'job.py'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != forkserver.ENV}
    if socket:
        env[forkserver.ENV] = socket
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [snakemake, "--cores", "2", "--quiet", "all"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"the {label} workflow failed:\n{proc.stdout}\n{proc.stderr}")
    outputs.append({p.name: p.read_text() for p in sorted((work / "out").iterdir())})
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="config/studies/deception_qwen2.5-7b.yaml")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--goal", type=float, default=1.5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the rehearsal directories")
    ap.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="instead of a rehearsal, a generated workflow of N script jobs (the suite's size)",
    )
    args = ap.parse_args()
    preset = (REPO / args.preset).resolve()
    before = load_average()
    plain: list[dict] = []
    served: list[dict] = []
    root = Path(tempfile.mkdtemp(prefix="bench-forkserver-"))
    if args.synthetic:

        def workload(label, outputs, sock):
            return run_synthetic(args.synthetic, root, label, outputs, sock)

        what = f"a generated workflow of {args.synthetic} script jobs"
    else:

        def workload(label, outputs, sock):
            return run_once(preset, root, label, outputs, sock)

        what = f"rehearsal of {args.preset}"
    with forkserver.running() as sock:
        times = interleave(
            {
                "plain": lambda: workload("plain", plain, None),
                "forkserver": lambda: workload("forkserver", served, sock),
            },
            repeats=args.repeats,
            warmup=False,
        )
    if args.keep:
        print(f"rehearsals kept in {root}")
    else:
        shutil.rmtree(root)
    ratios = {"plain / forkserver": per_repeat(times["plain"], times["forkserver"])}
    differing = sorted(
        {
            path
            for a, b in zip(plain, served, strict=True)
            for kind, paths in output_hashes.compare(a, b).items()
            if kind != "identical"
            for path in paths
        }
    )
    speedup = median(ratios["plain / forkserver"])
    goals = [
        Goal("speedup", f"fork server >= {args.goal}x as fast", round(speedup, 3), ">=", args.goal),
        Goal("identical", "outputs differing between the two", len(differing), "==", 0),
    ]
    header = [
        f"{what}: {args.repeats} repeat(s), plain and fork server in turn",
        load_line(before, load_average()),
        *(f"differs: {p}" for p in differing[:20]),
    ]
    figures = {"speedup": round(speedup, 3), "outputs_differing": len(differing)}
    meta = {"workload": what, "load_before": before, "load_after": load_average()}
    return report("forkserver", header, times, ratios, goals, figures, meta, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
