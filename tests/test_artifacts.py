"""Reading parquet inputs: a truncated or corrupt file gives one error naming it."""

from __future__ import annotations

import os

import polars as pl
import pytest

from interpflow.artifacts import CorruptFileError, read_parquet, read_table, write_parquet


def damaged(tmp_path, how: str):
    """A parquet file cut in half (a copy or a disk that ran out), or random bytes."""
    path = tmp_path / "results" / "generations" / "deception.parquet"
    write_parquet(pl.DataFrame({"prompt_id": [f"p{i}" for i in range(500)], "x": range(500)}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else os.urandom(len(data)))
    return path


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("reader", [read_parquet, read_table])
def test_damaged_parquet_names_the_file(tmp_path, how, reader):
    path = damaged(tmp_path, how)
    size = path.stat().st_size
    with pytest.raises(CorruptFileError) as err:
        reader(path, columns=["prompt_id"])
    msg = str(err.value)
    print(msg)
    assert msg.startswith(f"{path}: not a valid parquet file (truncated or corrupt): ")
    assert msg.endswith("; delete it and rerun to rebuild it")
    assert "\n" not in msg
    assert path.stat().st_size == size  # reported, not deleted or rewritten


def test_good_and_missing_files(tmp_path):
    path = write_parquet(pl.DataFrame({"a": [1, 2]}), tmp_path / "t.parquet")
    assert read_parquet(path)["a"].to_list() == [1, 2]
    assert read_table(path, columns=["a"]).num_rows == 2
    # A missing input keeps its own error (it names the file; there is nothing to delete).
    with pytest.raises(FileNotFoundError):
        read_parquet(tmp_path / "missing.parquet")


def test_progress_logs_at_most_every_interval_and_at_the_end():
    from interpflow.artifacts import Progress

    now = [0.0]
    lines: list[str] = []
    p = Progress("answers", 10, every_s=30.0, log=lines.append, clock=lambda: now[0])
    for t in (10.0, 20.0, 35.0, 40.0, 70.0):  # updates of 2 at these times
        now[0] = t
        p.update(2)
    assert lines == [
        "answers: 6/10 (60%) in 35 s, ~23 s left",  # the first update 30 s after the start
        "answers: 10/10 (100%) in 70 s",  # the end, whatever the interval
    ]
