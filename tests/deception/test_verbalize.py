"""The deception verbalizer stage (interpflow.deception.verbalize): one text per activation
row at the probe layer, graded by the label judge."""

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interpflow.deception.verbalize import verbalize_activations
from interpflow.judges import JudgeConfig

CLASSES = ["normal", "eval_aware", "deceptive"]


def test_verbalizer_at_one_layer(generations, tmp_path):
    d = 4
    rows = [
        (p, layer, pos)
        for p in "abcd"
        for layer in (1, 2)
        for pos in ("last_prompt", "response[0]")
    ]
    table = pa.table(
        {
            "prompt_id": [r[0] for r in rows],
            "layer": pa.array([r[1] for r in rows], pa.int16()),
            "position": [r[2] for r in rows],
            "token_index": pa.array([0] * len(rows), pa.int32()),
            "activation": pa.FixedSizeListArray.from_arrays(
                pa.array(np.zeros(len(rows) * d, np.float16)), d
            ),
        }
    )
    pq.write_table(table, tmp_path / "act.parquet")
    cfg = JudgeConfig(backend="offline")
    args = {
        "activations": tmp_path / "act.parquet",
        "generations": generations,
        "judge": cfg,
        "grader": cfg,
        "cache": tmp_path / "c.sqlite",
        "classes": CLASSES,
    }
    verbalize_activations(**args, nla=tmp_path / "nla.parquet", layer=2)
    nla = pl.read_parquet(tmp_path / "nla.parquet")
    assert nla.height == 8 and set(nla["layer"]) == {2}
    assert nla.filter(pl.col("prompt_id") == "b")["nla_label"].to_list() == ["deceptive"] * 2
    assert "response[0]" in nla["nla_text"][1]
    # the offline grader's confidence: its class's share of the keyword hits in the text
    # ("deceptive stance": 1 of 1 -> 1.0); "normal stance" hits none: a guess, 1/3 -> 0.33
    conf = dict(zip(nla["prompt_id"], nla["nla_confidence"]))
    assert (conf["b"], conf["a"]) == (1.0, 0.33)
    assert set(nla["nla_confidence_source"]) == {"stated"}
    with pytest.raises(ValueError, match="no rows at layer 7"):
        verbalize_activations(**args, nla=tmp_path / "x.parquet", layer=7)
