"""Snakemake script jobs in the fork server against fresh interpreters, on a preset rehearsal.

Each ``script:`` job of a fresh interpreter imports torch, transformers, peft and scikit-learn
(~6 CPU-seconds) before its own work; :mod:`interpflow.forkserver` imports them once and forks
each job. This benchmark rehearses one paper preset (:mod:`interpflow.rehearse`, stand-in
models on this CPU) both ways, interleaved over ``--repeats``, each in a fresh directory, and
checks that both produce the same outputs (:mod:`interpflow.output_hashes`). Reported: the
median seconds of each and the median per-repeat ratio plain / forkserver.

Goal: the fork server runs the rehearsal at least ``--goal`` times as fast (default 1.5) with
byte-identical outputs. Exit 1 when missed.

    .venv/bin/python benchmarks/forkserver.py [--preset config/studies/<file>.yaml] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
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
    outputs.append(output_hashes.manifest(results, str(results.parent)))
    return result["seconds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="config/studies/deception_qwen2.5-7b.yaml")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--goal", type=float, default=1.5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    preset = (REPO / args.preset).resolve()
    before = load_average()
    plain: list[dict] = []
    served: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-forkserver-") as tmp,
        forkserver.running() as sock,
    ):
        root = Path(tmp)
        times = interleave(
            {
                "plain": lambda: run_once(preset, root, "plain", plain, None),
                "forkserver": lambda: run_once(preset, root, "forkserver", served, sock),
            },
            repeats=args.repeats,
            warmup=False,
        )
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
        f"rehearsal of {args.preset}: {args.repeats} repeat(s), plain and fork server in turn",
        load_line(before, load_average()),
        *(f"differs: {p}" for p in differing[:20]),
    ]
    figures = {"speedup": round(speedup, 3), "outputs_differing": len(differing)}
    return report(
        "forkserver", header, times, ratios, goals, figures, {"preset": args.preset}, args.out
    )


if __name__ == "__main__":
    raise SystemExit(main())
