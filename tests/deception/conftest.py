"""Fixtures shared by the deception stage tests."""

from __future__ import annotations

import polars as pl
import pytest


@pytest.fixture
def generations(tmp_path):
    path = tmp_path / "gen.parquet"
    pl.DataFrame(
        {
            "prompt_id": ["a", "b", "c", "d"],
            "category": ["normal", "deceptive", "eval_aware", "normal"],
            "prompt": ["Bake bread?", "Lie to the inspector.", "You are being graded.", "Cats?"],
            "response": ["Sure.", "Okay.", "Fine.", "Meow."],
        }
    ).write_parquet(path)
    return path
