"""Batches that halve on a CUDA out-of-memory error and go on, instead of failing the job.

Seed 002 "handles OOM gracefully"; :class:`HalvingBatches` is that, for one generation run:
it calls ``fn`` on a batch of rows; on ``torch.cuda.OutOfMemoryError`` it frees the cache,
halves its batch size, and retries the failed rows in chunks of the new size, in order. The
smaller size is kept for the rest of the run (the memory that ran out does not come back). A
run without an out-of-memory error calls ``fn`` exactly once per batch, on the whole batch,
so its output equals the run without the helper; a single row that still runs out of memory
raises the error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class HalvingBatches:
    """Run batches (polars DataFrames) through a function, halving on CUDA out-of-memory.

    ``size``: the largest chunk tried (the run's batch size); ``log``: where each halving is
    reported. ``halvings`` counts them over the run.
    """

    def __init__(self, size: int, log: Callable[[str], Any] = print) -> None:
        if size < 1:
            raise ValueError(f"batch size must be at least 1; got {size}")
        self.size = size
        self.log = log
        self.halvings = 0

    def __call__(self, fn: Callable[[Any], Any], batch) -> list[Any]:
        """``fn``'s results on consecutive chunks of ``batch`` (rows in order) that cover it."""
        import torch

        out, start = [], 0
        while start < batch.height:
            chunk = batch.slice(start, self.size)
            try:
                out.append(fn(chunk))
                start += chunk.height
                continue
            except torch.cuda.OutOfMemoryError:
                if chunk.height == 1:
                    raise
            # outside the except block: the error's frames (and their tensors) are released
            self.size = chunk.height // 2
            self.halvings += 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.log(
                f"CUDA out of memory on {chunk.height} rows: batch size halved to {self.size}, "
                f"retrying from row {start} of this batch"
            )
        return out
