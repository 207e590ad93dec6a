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
