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


HARDER = REPO / "resources/tribunal/harder.jsonl"
WORDS = REPO / "resources/tribunal/word_problems.jsonl"


def test_shipped_harder_file_is_the_generator_output_then_the_word_problems():
    import json

    from interpflow.tribunal.arithmetic import harder_problems

    words = [json.loads(line) for line in WORDS.read_text().splitlines()]
    assert HARDER.read_text() == to_jsonl(harder_problems() + words)


def test_harder_problems_have_exact_answers_and_unique_ids():
    """Each kind as often as HARDER_COUNTS says; the gold is the expression's value (eval of
    a + b, a - b, a * b, a + b - c), differences never negative."""
    from collections import Counter

    from interpflow.tribunal.arithmetic import HARDER_COUNTS, harder_problems

    records = harder_problems()
    assert Counter(r["id"].split("-")[0] for r in records) == HARDER_COUNTS
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        expr = r["question"].removeprefix("What is ").removesuffix("?")
        assert set(expr) <= set("0123456789 +-*")
        assert r["answer"].endswith(f"#### {eval(expr)}") and eval(expr) >= 0


def test_word_problems_worked_solutions_recompute_to_their_answers():
    """Each hand-written word problem's answer is a chain of `a op b = c.` lines, every line
    right, the last value the gold after ####; at least two steps each."""
    import json
    import re

    step = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)\.$")
    table = load_problems(WORDS)
    assert table.height >= 30
    for rec in map(json.loads, WORDS.read_text().splitlines()):
        *lines, last = rec["answer"].splitlines()
        assert len(lines) >= 2, rec["id"]
        for line in lines:
            a, op, b, c = step.match(line).groups()
            exact = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}
            assert (int(a) / int(b) if op == "/" else exact[op]) == int(c), (rec["id"], line)
        assert last == f"#### {lines[-1].split(' = ')[1].rstrip('.')}"
