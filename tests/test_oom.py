"""interpflow.oom.HalvingBatches on constructed batches: a CUDA out-of-memory error (injected:
torch.cuda.OutOfMemoryError raised on CPU) halves the batch, the rows stay in order, the
smaller size is kept, one row that still runs out of memory fails."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from interpflow.oom import HalvingBatches


def _fits(limit, calls):
    """A batch function that runs out of memory above ``limit`` rows; records chunk sizes."""

    def fn(chunk):
        calls.append(chunk.height)
        if chunk.height > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return chunk["i"].to_list()

    return fn


def test_no_oom_is_one_call_on_the_whole_batch():
    calls, logs = [], []
    out = HalvingBatches(8, logs.append)(_fits(8, calls), pl.DataFrame({"i": range(8)}))
    assert out == [list(range(8))] and calls == [8] and logs == []


def test_oom_halves_keeps_order_and_keeps_the_smaller_size():
    calls, logs = [], []
    run = HalvingBatches(8, logs.append)
    # 7 rows, memory for 2: 7 fails -> 3 fails -> 1 (7 // 2 = 3, 3 // 2 = 1) then 1, 1, ...
    out = run(_fits(2, calls), pl.DataFrame({"i": range(7)}))
    assert [i for part in out for i in part] == list(range(7))  # every row once, in order
    assert calls == [7, 3, 1, 1, 1, 1, 1, 1, 1]
    assert run.size == 1 and run.halvings == 2 and len(logs) == 2
    assert "halved to 3" in logs[0] and "retrying from row 0" in logs[0]
    calls.clear()  # the next batch starts at the smaller size: no new error
    out = run(_fits(2, calls), pl.DataFrame({"i": range(10, 13)}))
    assert out == [[10], [11], [12]] and calls == [1, 1, 1] and run.halvings == 2


def test_oom_midway_retries_only_the_failed_rows():
    calls = []
    run = HalvingBatches(4, lambda _: None)
    seen = {"n": 0}

    def fn(chunk):  # the second chunk of 4 runs out of memory once
        seen["n"] += 1
        calls.append(chunk["i"].to_list())
        if seen["n"] == 2:
            raise torch.cuda.OutOfMemoryError("injected")
        return chunk["i"].to_list()

    out = run(fn, pl.DataFrame({"i": range(4)}))
    out += run(fn, pl.DataFrame({"i": range(4, 8)}))
    assert out == [[0, 1, 2, 3], [4, 5], [6, 7]]
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [6, 7]]


def test_a_single_row_that_runs_out_of_memory_fails():
    with pytest.raises(torch.cuda.OutOfMemoryError):
        HalvingBatches(4, lambda _: None)(_fits(0, []), pl.DataFrame({"i": range(3)}))
    with pytest.raises(ValueError, match="at least 1"):
        HalvingBatches(0)
