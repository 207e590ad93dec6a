"""Synthetic activations with the capture stage's exact schema and a known signal layer, for
the probe engine's tests (tests/test_probes.py) and the deception probe stages' tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from interpflow.probes import ACTIVATION_COLUMNS

CLASSES = ("deceptive", "eval_aware", "normal")
POSITIONS = ("last_prompt", "response[0]", "response[1]")
SIGNAL_LAYER, NOISE_LAYER = 2, 0
D = 16


def write_activations(
    path: Path,
    n_prompts: int = 60,
    layers: tuple[int, ...] = (NOISE_LAYER, SIGNAL_LAYER),
    positions: tuple[str, ...] = POSITIONS,
    d: int = D,
    seed: int = 0,
) -> pl.DataFrame:
    """Write an activations parquet with the capture stage's exact schema; return its labels.

    At ``SIGNAL_LAYER`` class ``c`` is shifted by 3 along basis direction ``c``; every other
    layer is pure noise. Each prompt also gets a shared random offset (a group effect).
    """
    rng = np.random.default_rng(seed)
    pids = [f"p{i:03d}" for i in range(n_prompts)]
    cls = np.arange(n_prompts) % len(CLASSES)
    rows: dict[str, list] = {k: [] for k in ACTIVATION_COLUMNS}
    acts = []
    for layer in layers:
        for i, pid in enumerate(pids):
            offset = rng.normal(0, 0.3, d)
            for j, pos in enumerate(positions):
                x = rng.normal(0, 1, d) + offset
                if layer == SIGNAL_LAYER:
                    x[cls[i]] += 3.0
                rows["prompt_id"].append(pid)
                rows["layer"].append(layer)
                rows["position"].append(pos)
                rows["token_index"].append(10 + j)
                acts.append(x.astype(np.float16))
    flat = pa.array(np.concatenate(acts), type=pa.float16())
    table = pa.table(
        {
            "prompt_id": pa.array(rows["prompt_id"], pa.string()),
            "layer": pa.array(rows["layer"], pa.int16()),
            "position": pa.array(rows["position"], pa.string()),
            "token_index": pa.array(rows["token_index"], pa.int32()),
            "activation": pa.FixedSizeListArray.from_arrays(flat, d),
        }
    )
    # shuffle row order on disk: the loader must not rely on it
    table = table.take(pa.array(rng.permutation(table.num_rows)))
    pq.write_table(table, path)
    return pl.DataFrame({"prompt_id": pids, "category": [CLASSES[c] for c in cls]})
