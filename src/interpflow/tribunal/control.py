"""Stage tribunal_control: the same traces re-read by a control copy of the model.

The random-init control of the tribunal probes: a model with the same architecture and
tokenizer and random weights (``models.<name>.init: random``) cannot sample a chain of thought
worth labelling, so it is not sampled. It reads the instance's own traces by teacher forcing
(:func:`interpflow.capture.capture_texts`: each chat prompt + its sampled response) and its
activations are captured at the same layers and aggregations. The probes stage fits the same
probe on them, on the same split, and reports each probe's paired margin over it
(``probes.control``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from interpflow.artifacts import atomic_path, read_parquet, write_provenance
from interpflow.models import ModelSpec
from interpflow.tribunal.common import CaptureSettings


def capture_control(
    *,
    generations: str | Path,
    activations: str | Path,
    provenance: str | Path,
    model: ModelSpec,
    capture: CaptureSettings,
    batch_size: int = 16,
    model_id: str | None = None,
    last_number_fallback: bool = False,
) -> dict[str, Any]:
    """Stage: teacher-force every trace of ``generations`` (its ``chat_prompt`` + ``response``)
    through ``model``; write the activations at ``capture``'s layers × aggregations to
    ``activations`` (the schema generation writes; ``pre_answer`` windows as rule
    tribunal_tokens draws them, the answer parsed with ``last_number_fallback``) and its
    ``provenance``. Returns a summary."""
    from interpflow.models import load_model
    from interpflow.tribunal.tokens import read_traces

    gens = read_parquet(generations)
    lm, tokenizer = load_model(model)
    table, _ = read_traces(
        lm,
        tokenizer,
        gens,
        capture,
        positions=capture.positional,
        last_number_fallback=last_number_fallback,
        batch_size=batch_size,
    )
    with atomic_path(activations) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    out = {"model_id": model_id, "n_traces": gens.height, "n_rows": table.num_rows}
    write_provenance(
        provenance,
        stage="tribunal_control",
        layers=[int(x) for x in capture.layers],
        aggregations=list(capture.aggregations),
        **out,
    )
    return out


def control_proba(path, lab, layer, agg, groups, tr, te, seed, C) -> dict[str, np.ndarray]:
    """The same probe fit on the control model's activations (``path``) of the same train
    traces (``groups[tr]``, labels from ``lab``, at ``layer`` × ``agg``):
    ``{prompt_id: proba}`` of the test traces (``groups[te]``), in ``(correct, incorrect)``
    order. Every trace must be there: the control re-read exactly these traces."""
    from sklearn.base import clone

    from interpflow.probes import load_probe_dataset, make_logreg, proba_for

    ds = load_probe_dataset(path, lab, "probe_label", layer, [agg])
    row = {g: i for i, g in enumerate(ds.groups)}
    missing = sorted(set(groups[tr]).union(groups[te]).difference(row))
    if missing:
        raise ValueError(f"{path}: no L{layer}.{agg} row for traces {missing[:5]}")
    tr_rows = [row[g] for g in groups[tr]]
    te_rows = [row[g] for g in groups[te]]
    pipe = clone(make_logreg(seed, C=C)).fit(ds.X[tr_rows], ds.y[tr_rows])
    proba = proba_for(pipe, ds.X[te_rows], np.array(["correct", "incorrect"]))
    return {g: proba[i] for i, g in enumerate(groups[te])}
