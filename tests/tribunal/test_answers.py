"""interpflow.tribunal.answers: the final-answer parser and exact numbers."""

from __future__ import annotations

from fractions import Fraction

import pytest

from interpflow.tribunal import answers as A

PARSE_CASES = [
    # (response, value, method)
    ("So the total is 18.\n\nThe final answer is $\\boxed{18}$.", "18", "boxed"),
    ("Janet makes 9 * 2 = 18 dollars.\n#### 18", "18", "hashes"),
    ("She pays 1200 + 50 = 1250.\n#### 1,250", "1250", "hashes"),
    ("The answer is 42.", "42", "answer_is"),
    ("So she needs $\\boxed{2{,}500}$ dollars.", "2500", "boxed"),
    ("The answer is \\boxed{3\\frac{1}{2}}.", "7/2", "boxed"),
    ("#### 1\\,250", "1250", "hashes"),
    ("Therefore, the answer is: 7 apples.", "7", "answer_is"),
    ("**Final Answer:** $1,234.50", "2469/2", "answer_is"),
    ("**Final Answer**: 15", "15", "answer_is"),
    ("Answer: -6 degrees", "-6", "answer_is"),
    ("the answer is \u22126", "-6", "answer_is"),
    ("The answer is +3.", "3", "answer_is"),
    ("The answer is 3/4.", "3/4", "answer_is"),
    ("The answer is 0.75 liters", "3/4", "answer_is"),
    ("The answer is .5", "1/2", "answer_is"),
    ("Final answer: 40%", "40", "answer_is"),
    ("The answer would be 1,000,000 dollars.", "1000000", "answer_is"),
    ("\\boxed{\\frac{5}{2}}", "5/2", "boxed"),
    ("\\boxed{-\\dfrac{3}{4}}", "-3/4", "boxed"),
    ("\\boxed{\\$1,250}", "1250", "boxed"),
    ("\\boxed{18 \\text{ dollars}}", "18", "boxed"),
    ("\\boxed{18\\%}", "18", "boxed"),
    ("\\boxed{x = 12}", "12", "boxed"),
    ("First \\boxed{10}, but wait, fix it: \\boxed{12}", "12", "boxed"),
    ("\\boxed{{20}}", "20", "boxed"),
    ("<think>maybe 5... the answer is 5? no, 6</think>\n\nThe answer is \\boxed{6}.", "6", "boxed"),
    (
        "<think>The answer is 5.</think>\nSo we get 5 cookies.",
        None,
        "none",
    ),  # only inside the thought
    ("Okay, let me think. 3 + 4 = 7, then 7 * 2 = 14", None, "none"),
    ("The answer is unclear.", None, "none"),
    ("", None, "none"),
    ("\\boxed{}", None, "none"),
    ("The answer is 12. #### 13", "13", "hashes"),  # #### outranks "answer is"
    ("The answer is 12, then \\boxed{14}", "14", "boxed"),
    ("The answer is not 5. The answer is 8.", "8", "answer_is"),
    ("He has 62 - 31 = 31 dollars left.\nThe answer is 31 dollars.", "31", "answer_is"),
    ("The answer is $ 2.50 per cup", "5/2", "answer_is"),
    ("The answer is 1 234", "1", "answer_is"),  # space is not a thousands separator
]


@pytest.mark.parametrize("response,value,method", PARSE_CASES)
def test_parse_final_answer(response, value, method):
    got = A.parse_final_answer(response)
    assert A.format_number(got.value) == value
    assert got.method == method


def test_last_number_fallback_is_opt_in():
    text = "Okay so 3 + 4 = 7, and 7 * 2 = 14 apples"
    assert A.parse_final_answer(text).method == "none"
    got = A.parse_final_answer(text, last_number_fallback=True)
    assert (got.value, got.method) == (Fraction(14), "last_number")


@pytest.mark.parametrize(
    "text,value",
    [
        ("1,234", "1234"),
        ("12,50", "12"),
        ("-0.5", "-1/2"),
        ("7/0", None),
        ("no digits", None),
        ("$ -3", "-3"),
        ("3.14159", "314159/100000"),
        ("L2 is 9", "9"),
        # LaTeX thousands separators
        ("2{,}500", "2500"),
        ("\\$2{,}500.50", "5001/2"),
        ("1\\,000 apples", "1000"),
        ("12\\!345", "12345"),
        ("2\\,50", "2"),  # not a thousands group: a thin space, then 50
        # mixed numbers, plain, LaTeX and Unicode
        ("3 1/2", "7/2"),
        ("-2 3/4 cups", "-11/4"),
        ("3\\frac{1}{2}", "7/2"),
        ("3\\dfrac{1}{4} hours", "13/4"),
        ("-\\frac{1}{2}", "-1/2"),
        ("3½", "7/2"),
        ("¾", "3/4"),
        ("10 20", "10"),  # two numbers, not a mixed one
    ],
)
def test_parse_number(text, value):
    assert A.format_number(A.parse_number(text)) == value


def test_gold_answer():
    assert A.gold_answer("2 + 2 = 4\n#### 4") == 4
    assert A.gold_answer("x\n#### 1,250") == 1250
    with pytest.raises(ValueError, match="no '#### <number>'"):
        A.gold_answer("just text 4")
    with pytest.raises(ValueError, match="no number after"):
        A.gold_answer("#### many")


# Real SmolLM2-135M-Instruct traces (single-digit additions, "End with 'The answer is
# <number>.'", 32-token cap): (response, finished, value, method) with the fallback on.
SMOLLM2_TRACES = [
    ("The answer is 5.", True, "5", "answer_is"),
    # an equation after "the answer is": its result, not its first operand
    ("Here's how:\n\nThe answer is 2 + 1 = 3.\n\nIn this example,", False, "3", "answer_is"),
    (
        "The answer is 10.\n\nStep-by-step solution:\n1. Add 1 to each side of",
        False,
        "10",
        "answer_is",
    ),
    ("1 + 8 = 9", True, "9", "last_number"),
    ('8 + 7 = "8 + 7 = 15"', True, "15", "last_number"),
    ("Two + 6 = 12", True, "12", "last_number"),
    ("Here's the solution:\n\nAdd 1 to 8. The answer is 11.", True, "11", "answer_is"),
    # the explicit answer outranks a later equation, even a right one
    ("the answer is 6. For the equation 5 + 4 = 9", False, "6", "answer_is"),
    ("A simple yet profound puzzle: 7 + 7 = 10\nThe answer is 10.", True, "10", "answer_is"),
    ("The answer to this math problem is 12.", True, "12", "last_number"),
    # the question echoed back is not an answer
    ("What is 1 + 8?", True, None, "none"),
    ('The answer is "three + two".', True, None, "none"),
    # cut at the cap mid-thought: its last number is not a final answer
    ("Here's a step-by-step solution:\n\n1. Add 2 to the left-hand side:", False, None, "none"),
    ("Step 1: Add the two numbers.\n9 = 10\nStep 2: Calculate the sum.\n", False, None, "none"),
]


@pytest.mark.parametrize("response,finished,value,method", SMOLLM2_TRACES)
def test_parse_real_smollm2_traces(response, finished, value, method):
    got = A.parse_final_answer(response, last_number_fallback=True, finished=finished)
    assert (A.format_number(got.value), got.method) == (value, method)


def test_fallback_skips_questions_but_reads_statements_after_them():
    got = A.parse_final_answer("What is 3 + 4? It is 7", last_number_fallback=True)
    assert (got.value, got.method) == (Fraction(7), "last_number")
