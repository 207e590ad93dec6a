"""Unit tests: the data stage's external JSONL reader."""

from __future__ import annotations

import polars as pl
import pytest

from interpflow.inoculation.common import read_jsonl


def test_read_jsonl_errors_name_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"instruction": "a", "completion": "b"}\n\n{"instruction": "c"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:3: expected"):
        read_jsonl(p)
    p.write_text('{"instruction": "a", "completion": "b"}\nnot json\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: not valid JSON"):
        read_jsonl(p)
    p.write_text('{"instruction": "a", "completion": "b"}\n')
    assert read_jsonl(p)["completion"].to_list() == ["b"]
    with pytest.raises(ValueError, match="fewer than the 2"):
        read_jsonl(p, 2)


def test_make_dataset_from_an_external_jsonl(tmp_path):
    from interpflow.inoculation.data import make_dataset

    src = tmp_path / "controls.jsonl"
    src.write_text("".join(f'{{"instruction": "q{i}", "completion": "a{i}"}}\n' for i in range(3)))
    out = tmp_path / "trait_X.parquet"
    summary = make_dataset(dataset="trait_X", out=out, external_jsonl=src, n=2)
    assert summary == {"dataset": "trait_X", "source": str(src), "n": 2}
    df = pl.read_parquet(out)
    assert df["completion"].to_list() == ["a0", "a1"] and set(df["source"]) == {"controls.jsonl"}
    with pytest.raises(ValueError, match="datagen needs instructions"):
        make_dataset(dataset="train", out=tmp_path / "train.parquet", n=2)
