"""Prompt banks checked at planning (interpflow.deception.banks.check_banks): an empty bank and
a single class stop the plan; duplicates and prompts in two banks are named, file and line."""

from __future__ import annotations

import pytest

from interpflow.config import ConfigError
from interpflow.deception.banks import check_banks


def test_empty_and_one_class_banks_stop_and_duplicates_are_named(tmp_path):
    a, b, empty = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "empty.txt"
    a.write_text("hello there\n# a comment\nhello  there\nsame\n")
    b.write_text("same\nother\n")
    empty.write_text("# only a comment\n\n")
    key = "deception.x.banks"
    warnings = check_banks(paths=[a, b], key=key)
    assert warnings == [
        (
            f"config key {key}: 1 prompt(s) repeated within a bank (each is kept once): "
            f"{a}:3 (first at {a}:1)"
        ),
        (
            f"config key {key}: 1 prompt(s) in two banks (label noise; dropped from both): "
            f"{b}:1 (first at {a}:4)"
        ),
    ]
    with pytest.raises(ConfigError, match=rf"config key {key}: prompt bank {empty} has no prompts"):
        check_banks(paths=[a, empty], key=key)
    b.write_text("same\n")  # its one prompt is a's: one class left
    with pytest.raises(ConfigError, match="a probe needs at least two classes, and only a has"):
        check_banks(paths=[a, b], key=key)
