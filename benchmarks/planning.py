"""Planning time as instances multiply: `snakemake -n all` on a generated sweep of 1000+ jobs.

Every SLURM job and every `snakemake` start re-parses the Snakefile and plans the DAG, so
planning must stay fast when a config holds many instances. This benchmark writes an
inoculation sweep (``--prompts`` inoculation prompts x 2 conditions x ``--lrs`` learning rates
x ``--seeds`` seeds, each (lr, seed) an instance of the study) into a fresh copy of the
workflow, and times `snakemake -n all` on it beside the default config's plan, interleaved
over ``--repeats``. Reported: median seconds of each, the sweep's job count, and the median
per-repeat ratio sweep / default.

Goal: the sweep (>= 1000 jobs at the default size) plans in <= 10 s on 2 cores
(``--goal-seconds``), and it has at least ``--min-jobs`` jobs (so the goal means something).
Exit 1 when missed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _bench import Goal, interleave, load_average, load_line, median, per_repeat, report

REPO = Path(__file__).resolve().parents[1]
COPY = ("Snakefile", "workflow", "config", "envs", "scripts", "resources", "src")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def sweep_config(work: Path, n_prompts: int, lrs: list[float], seeds: list[int]) -> Path:
    """A prompts file with ``n_prompts`` inoculation prompts (the toy study's traits) and a
    config with one inoculation sweep entry over ``lrs`` x ``seeds``."""
    toy = yaml.safe_load((REPO / "resources/inoculation/playful_french_toy.yaml").read_text())
    traits = list(toy["traits"])
    toy["prompts"] = {
        f"p{i:02d}": {"trait": traits[i % len(traits)], "text": f"Inoculation prompt {i}."}
        for i in range(n_prompts)
    }
    prompts = work / "prompts_sweep.yaml"
    prompts.write_text(yaml.safe_dump(toy))
    cfg = {
        "inoculation": {
            "plan": {
                "model": {"name": "stub"},
                "prompts_file": str(prompts),
                "training": {"prompts": None, "conditions": ["fixed", "mix"]},
                "sweep": {"training.lr": lrs, "training.seed": seeds},
            }
        }
    }
    path = work / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def plan(work: Path, *args: str) -> tuple[float, int]:
    """Seconds of one `snakemake -n all ...` and its job count."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "2", "all", *args],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake -n failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    m = re.search(r"^total\s+(\d+)", proc.stdout, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"no job total in the plan:\n{proc.stdout[-3000:]}")
    return seconds, int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=20, help="inoculation prompts in the sweep")
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--goal-seconds", type=float, default=10.0)
    ap.add_argument("--min-jobs", type=int, default=1000)
    ap.add_argument("--out", help="JSON path (default benchmarks/results/planning.json)")
    args = ap.parse_args(argv)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for name in COPY:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, work / name)
        cfg = sweep_config(work, args.prompts, args.lrs, args.seeds)
        jobs: dict[str, int] = {}

        def run(name: str, *extra: str):
            def timed() -> float:
                seconds, jobs[name] = plan(work, *extra)
                return seconds

            return timed

        times = interleave(
            {"default": run("default"), "sweep": run("sweep", "--configfile", str(cfg))},
            args.repeats,
        )
    ratios = {"sweep / default": per_repeat(times["sweep"], times["default"])}
    sweep_s = median(times["sweep"])
    goals = [
        Goal(
            "seconds", f"sweep plans in <= {args.goal_seconds} s", sweep_s, "<=", args.goal_seconds
        ),
        Goal("jobs", f"the sweep has >= {args.min_jobs} jobs", jobs["sweep"], ">=", args.min_jobs),
    ]
    load_after = load_average()
    header = [
        (
            f"planning: `snakemake -n all`, default config ({jobs['default']} jobs) vs an "
            f"inoculation sweep of {args.prompts} prompts x 2 conditions x {len(args.lrs)} LRs "
            f"x {len(args.seeds)} seeds ({jobs['sweep']} jobs), {args.repeats} interleaved repeats"
        ),
        load_line(load_before, load_after),
    ]
    return report(
        "planning",
        header,
        times,
        ratios,
        goals,
        {
            "sweep_s": sweep_s,
            "default_s": median(times["default"]),
            "sweep_jobs": jobs["sweep"],
            "default_jobs": jobs["default"],
        },
        {"args": vars(args), "load_before": load_before, "load_after": load_after},
        args.out,
    )


if __name__ == "__main__":
    sys.exit(main())
