"""interpflow.tribunal.arithmetic: the shipped easy problems are the generator's output."""

from __future__ import annotations

from conftest import REPO

from interpflow.tribunal.arithmetic import addition_problems, to_jsonl
from interpflow.tribunal.prompts import load_problems

SHIPPED = REPO / "resources/tribunal/arithmetic.jsonl"


def test_shipped_file_is_the_generator_output():
    assert SHIPPED.read_text() == to_jsonl(addition_problems())


def test_problems_load_with_their_sums_as_gold():
    table = load_problems(SHIPPED)
    assert table.height == 81
    row = table.filter(table["problem_id"] == "add-7-5").row(0, named=True)
    assert (row["question"], row["gold"]) == ("What is 7 + 5?", "12")
    assert table["problem_id"].n_unique() == 81
