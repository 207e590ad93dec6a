"""What the benchmarks share: interleaved repeats, goals, the table, the JSON and the exit code.

A benchmark compares configurations on a shared, noisy machine. So each repeat runs every
configuration once, in turn (A, B, A, B, ...), and a ratio is taken per repeat between runs
made side by side; the goal is judged on the median of those per-repeat ratios. The JSON
file holds every per-repeat figure and the load average before and after.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def interleave(
    configs: dict[str, Callable[[], float]], repeats: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Run every config once per repeat, in turn; each callable returns the seconds it measured.

    ``warmup`` runs each config once first, untimed (lazy imports, allocator, caches).
    """
    if warmup:
        for fn in configs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, fn in configs.items():
            times[name].append(fn())
    return times


def per_repeat(num: list[float], den: list[float]) -> list[float]:
    """``num[i] / den[i]`` for each repeat."""
    return [a / b if b else math.inf for a, b in zip(num, den, strict=True)]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@dataclass
class Goal:
    """``value <op> target``, e.g. capture overhead ``<=`` 1.10."""

    name: str
    text: str  # "capture overhead <= 1.10x generation alone"
    value: float | int
    op: str  # "<=", ">=" or "=="
    target: float | int

    @property
    def met(self) -> bool:
        if self.op == "<=":
            return self.value <= self.target
        if self.op == ">=":
            return self.value >= self.target
        return self.value == self.target


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def load_line(before: list[float], after: list[float]) -> str:
    """The machine's load while the benchmark ran (others share it)."""
    return (
        f"load average (1/5/15 min) before {before}, after {after}; "
        f"{len(os.sched_getaffinity(0))} usable CPUs"
    )


def fmt(x: float) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def report(
    name: str,
    header: list[str],
    times: dict[str, list[float]],
    ratios: dict[str, list[float]],
    goals: list[Goal],
    figures: dict[str, object],
    meta: dict[str, object],
    out: str | Path | None,
) -> int:
    """Print the table, write the JSON, print ``name=value`` pairs last; return the exit code.

    Exit code 0 when every goal is met, 1 otherwise.
    """
    for line in header:
        print(line)
    width = max([len(k) for k in [*times, *ratios]] + [10])
    if times:
        print(f"{'seconds':<{width}}  {'median':>8}  per repeat")
        for k, v in times.items():
            print(f"{k:<{width}}  {median(v):>8.3f}  " + " ".join(f"{x:.3f}" for x in v))
    if ratios:
        print(f"{'ratio (per repeat)':<{width}}  {'median':>8}  per repeat")
        for k, v in ratios.items():
            print(f"{k:<{width}}  {median(v):>8.3f}  " + " ".join(f"{x:.3f}" for x in v))
    for g in goals:
        print(f"goal: {g.text}: measured {fmt(g.value)} -> {'met' if g.met else 'MISSED'}")
    met = all(g.met for g in goals)
    missed = [g.name for g in goals if not g.met]
    print("result: all goals met" if met else f"result: MISSED {', '.join(missed)}")
    doc = {
        "benchmark": name,
        "goals_met": met,
        "goals": [asdict(g) | {"met": g.met} for g in goals],
        "figures": figures,
        "median_s": {k: median(v) for k, v in times.items()},
        "median_ratio": {k: median(v) for k, v in ratios.items()},
        "per_repeat_s": times,
        "per_repeat_ratio": ratios,
        "meta": meta
        | {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {path}")
    pairs = figures | {"goals_met": int(met)}
    print(" ".join(f"{k}={fmt(v)}" for k, v in pairs.items()))
    return 0 if met else 1
