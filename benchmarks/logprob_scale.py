"""Logprob heuristics at seed scale: peak memory and time of rule inoculation_heuristics on
synthetic tables the size of seed 003's.

Seed 003 scores a 1000-example subsample of its training set (``logprobs.subsample: 1000``)
under no prefix and under each of its 48 prompts, fixed and with index-matched rephrasings
(mix): 97 conditions x 1000 completions x ~200 tokens = ~19.4M per-token rows, which the
heuristics join (prefix vs no prefix, token by token) into the W and W_tokens matrices,
PCA/SVD, angles and the gradient heuristics. This benchmark writes per-example and per-token
parquet tables of that size (``--examples``, ``--prompts``, ``--tokens``; logprobs drawn at
random, a prompt-specific shift so the matrices have structure), then runs
:func:`interpflow.inoculation.heuristics.heuristics_stage` in a fresh subprocess and reads
its peak resident memory (``ru_maxrss``) and wall time, ``--repeats`` times.

Goal: peak memory <= 8 GB (``--goal-gb``) at the default (seed) size. Exit 1 when missed.
The stage streams the per-token table, so the goal holds at the full 10k examples too::

    python benchmarks/logprob_scale.py --examples 10000

``--baseline REV`` runs the stage of git revision ``REV`` (its ``src/`` extracted with ``git
archive``) on the same tables, in turn with this tree's, and reports its peak and time beside;
``--baseline-limit-gb`` caps the baseline's address space (RLIMIT_AS) so that an in-memory
baseline at a size it cannot hold stops with an error (reported, not fatal) instead of taking
a shared machine's memory. The goal is judged on this tree's stage.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _bench import Goal, load_average, load_line, median, report

TRAITS = ("Playful", "French")
REPO = Path(__file__).resolve().parent.parent


def write_tables(d: Path, n_examples: int, n_prompts: int, n_tokens: int, seed: int = 0) -> dict:
    """Synthetic logprob tables with the logprobs stage's schemas; returns the row counts."""
    rng = np.random.default_rng(seed)
    keys = [f"p{i:02d}" for i in range(n_prompts)]
    conditions = [("none", "none", None)] + [
        (f"{k}-{t}", t, k) for k in keys for t in ("fixed", "mix")
    ]
    lengths = rng.integers(n_tokens // 2, n_tokens * 3 // 2 + 1, size=n_examples)
    base = [rng.normal(-2.0, 1.0, size=n).astype(np.float32) for n in lengths]
    shift = {k: rng.normal(0.05, 0.05) for k in keys}
    ex_rows = []
    writer = None
    n_token_rows = 0
    for cond, ptype, key in conditions:
        ids, tix, lps = [], [], []
        for e, b in enumerate(base):
            lp = (
                b
                if key is None
                else b + np.float32(shift[key]) + rng.normal(0, 0.1, b.size).astype(np.float32)
            )
            rid = f"train|{cond}|e{e:05d}"
            ids.append(np.full(b.size, rid, dtype=object))
            tix.append(np.arange(b.size, dtype=np.int32))
            lps.append(lp)
            ex_rows.append(
                (
                    "train",
                    cond,
                    ptype,
                    key,
                    f"e{e:05d}",
                    rid,
                    b.size,
                    float(lp.sum()),
                    float(lp.mean()),
                )
            )
        table = pa.table(
            {
                "row_id": pa.array(np.concatenate(ids), pa.string()),
                "token_index": pa.array(np.concatenate(tix)),
                "token_id": pa.array(np.zeros(sum(lengths), np.int32)),
                "logprob": pa.array(np.concatenate(lps)),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(d / "train.tokens.parquet", table.schema)
        writer.write_table(table)
        n_token_rows += table.num_rows
    writer.close()
    cols = ("dataset", "condition", "prefix_type", "prompt_key", "example_id", "row_id",
            "n_tokens", "logprob_sum", "logprob_mean")  # fmt: skip
    pq.write_table(pa.table(dict(zip(cols, map(list, zip(*ex_rows))))), d / "train.parquet")
    small = []  # neutral and trait-only controls: 200 completions each, per-example only
    for dataset in ("neutral", *(f"trait_{t}" for t in TRAITS)):
        for cond, ptype, key in conditions:
            for e in range(200):
                lp = rng.normal(-2.0, 1.0) + (0 if key is None else shift[key])
                small.append(
                    (dataset, cond, ptype, key, f"c{e}", f"{dataset}|{cond}|c{e}", 20, 20 * lp, lp)
                )
    rows = dict(zip(cols, map(list, zip(*small))))
    pq.write_table(
        pa.table({k: v for k, v in rows.items()}).filter(
            pa.compute.equal(pa.table(rows)["dataset"], "neutral")
        ),
        d / "neutral.parquet",
    )
    pq.write_table(
        pa.table(rows).filter(pa.compute.not_equal(pa.table(rows)["dataset"], "neutral")),
        d / "traits.parquet",
    )
    pq.write_table(
        pa.table({"prompt_key": keys, "selfperp_raw": rng.normal(3, 1, n_prompts),
                  "selfperp_context": rng.normal(2, 1, n_prompts),
                  "prompt_tokens": np.full(n_prompts, 8)}),
        d / "selfperp.parquet",
    )  # fmt: skip
    prompts = {k: {"key": k, "trait": TRAITS[i % 2] if i % 8 else "neutral", "text": f"Prompt {k}."}
               for i, k in enumerate(keys)}  # fmt: skip
    (d / "prompts.json").write_text(json.dumps(prompts))
    return {"token_rows": n_token_rows, "example_rows": len(ex_rows), "conditions": len(conditions)}


CHILD = """
import json, resource, sys, time
from pathlib import Path
d, src, limit_gb = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
if src:
    sys.path.insert(0, src)  # the baseline revision's interpflow
if limit_gb > 0:
    resource.setrlimit(resource.RLIMIT_AS, (int(limit_gb * 2**30),) * 2)
import interpflow
from interpflow.inoculation.heuristics import heuristics_stage
from interpflow.inoculation.study import InocPrompt
assert interpflow.__file__.startswith(src or str(Path.cwd())), interpflow.__file__
prompts = {k: InocPrompt(**v) for k, v in json.loads((d / "prompts.json").read_text()).items()}
t0 = time.perf_counter()
heuristics_stage(
    train=d / "train.parquet", train_tokens=d / "train.tokens.parquet", neutral=d / "neutral.parquet",
    traits=d / "traits.parquet", trait_names=["Playful", "French"], selfperp=d / "selfperp.parquet",
    prompts=prompts, out_table=d / "o_table.parquet", out_embeddings=d / "o_emb.parquet",
    out_angles=d / "o_angles.parquet", out_angle_summary=d / "o_as.parquet",
    out_matrices=d / "o_W.safetensors", out_meta=d / "o_W.json",
)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def run_once(d: Path, src: str = "", limit_gb: float = 0.0) -> dict:
    """One run of the stage in a fresh process: ``{seconds, peak_gb}``; a baseline (``src``)
    that fails, e.g. at its memory cap, gives ``{"failed": <the error's last line>}``."""
    cmd = [sys.executable, "-c", CHILD, str(d), src, str(limit_gb)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        if src:
            lines = proc.stderr.strip().splitlines() or [""]
            cause = [ln for ln in lines if "alloc" in ln or "Error" in ln] or lines
            return {"failed": f"exit code {proc.returncode}: {cause[-1].strip()[:200]}"}
        raise SystemExit(f"heuristics failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_src(rev: str, into: Path) -> str:
    """``src/`` of git revision ``rev`` extracted under ``into``; returns its path."""
    archive = subprocess.run(
        ["git", "archive", rev, "src/interpflow"], cwd=REPO, check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return str(into / "src")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="training completions scored")
    parser.add_argument("--prompts", type=int, default=48, help="inoculation prompts")
    parser.add_argument("--tokens", type=int, default=200, help="mean tokens per completion")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--goal-gb", type=float, default=8.0)
    parser.add_argument("--baseline", help="git revision whose stage runs beside (e.g. HEAD~1)")
    parser.add_argument(
        "--baseline-limit-gb", type=float, default=0.0, help="baseline address-space cap (0: none)"
    )
    parser.add_argument("--out", help="JSON path (default benchmarks/results/logprob_scale.json)")
    args = parser.parse_args(argv)
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="logprob_scale_") as tmp:
        d = Path(tmp)
        src = baseline_src(args.baseline, d / "baseline") if args.baseline else ""
        t0 = time.perf_counter()
        sizes = write_tables(d, args.examples, args.prompts, args.tokens)
        build_s = time.perf_counter() - t0
        runs, base_runs = [], []
        for _ in range(args.repeats):  # in turn: baseline, this tree
            if src:
                base_runs.append(run_once(d, src, args.baseline_limit_gb))
            runs.append(run_once(d))
    peak = max(r["peak_gb"] for r in runs)
    times = {"heuristics": [r["seconds"] for r in runs]}
    figures = {"peak_gb": round(peak, 3), "seconds": round(median(times["heuristics"]), 2)}
    header = []
    if src:
        ok = [r for r in base_runs if "failed" not in r]
        if ok:
            times[f"heuristics at {args.baseline}"] = [r["seconds"] for r in ok]
            figures["baseline_peak_gb"] = round(max(r["peak_gb"] for r in ok), 3)
        failed = [r["failed"] for r in base_runs if "failed" in r]
        figures["baseline_failed"] = len(failed)
        if failed:
            header.append(
                f"baseline {args.baseline} failed {len(failed)} of {args.repeats} runs "
                f"(address space capped at {args.baseline_limit_gb} GiB): {failed[0]}"
            )
    goal = Goal(
        "peak_memory", f"peak memory <= {args.goal_gb} GB", round(peak, 3), "<=", args.goal_gb
    )
    return report(
        "logprob_scale",
        [
            (
                f"inoculation_heuristics on {sizes['token_rows']:,} per-token rows "
                f"({args.examples} examples x {sizes['conditions']} conditions x "
                f"~{args.tokens} tokens); tables built in {build_s:.1f} s"
            ),
            *header,
            load_line(before, load_average()),
        ],
        times,
        {},
        [goal],
        {**figures, **sizes},
        {
            "examples": args.examples,
            "prompts": args.prompts,
            "tokens": args.tokens,
            "baseline": args.baseline,
            "baseline_limit_gb": args.baseline_limit_gb,
            "load_before": before,
            "load_after": load_average(),
        },
        args.out,
    )


if __name__ == "__main__":
    sys.exit(main())
