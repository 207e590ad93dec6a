"""Final answers of chains of thought, and GSM8K gold answers, as exact numbers.

:func:`parse_final_answer` finds the answer (``\\boxed{}``, ``#### n``, "the answer is n",
optionally the last number) after the last ``</think>``; :func:`parse_number` reads one
number exactly (signs, thousands separators, decimals, fractions, currency, units).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

_FRAC_TEX = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}")
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+])?\s*"
    r"(?:(?P<whole>\d+)\s+(?=\d+\s*/\s*\d))?"  # a mixed number's whole part: 3 1/2
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+)(?!\d|\.\d))?"
)
_VULGAR = {"½": " 1/2", "⅓": " 1/3", "⅔": " 2/3", "¼": " 1/4", "¾": " 3/4", "⅕": " 1/5",
           "⅛": " 1/8", "⅜": " 3/8", "⅝": " 5/8", "⅞": " 7/8"}  # fmt: skip
_TEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,|\\!|\\ )(?=\d{3}(?!\d))")
_TEX_JUNK = re.compile(r"\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}|\\[,;!:]|\\quad|\\left|\\right")


def _clean(text: str) -> str:
    """Drop LaTeX text blocks, currency / percent signs, markdown emphasis; unify minus signs."""
    text = text.replace("\u2212", "-").replace("\u2013", "-").replace("\u00a0", " ")
    text = _TEX_THOUSANDS.sub(",", text)  # 2{,}500, 2\,500, 2\!500 -> 2,500
    for glyph, frac in _VULGAR.items():
        text = text.replace(glyph, frac)  # 3½ -> 3 1/2
    text = _FRAC_TEX.sub(r" \1/\2", text)  # 3\frac{1}{2} -> 3 1/2, not 31/2
    text = _TEX_JUNK.sub(" ", text)
    for junk in ("\\$", "\\%", "$", "%", "*", "€", "£", "\\"):
        text = text.replace(junk, " " if junk in ("*", "\\") else "")
    return text


def parse_number(text: str) -> Fraction | None:
    """The first number in ``text`` as an exact Fraction, or None.

    Handles signs (``-``, ``+``, the Unicode minus), thousands separators (``1,234``, and
    LaTeX's ``2{,}500``, ``2\\,500``, ``2\\!500``), decimals, simple and mixed fractions
    (``3/4``, ``\\frac{3}{4}``, ``3 1/2``, ``3\\frac{1}{2}``, ``3½``), currency and percent
    signs and trailing units (``$1,250.00``, ``18 apples``, ``40%``).
    """
    m = _NUMBER.search(_clean(text))
    if m is None:
        return None
    value = Fraction(m.group("num").replace(",", ""))
    if m.group("den") is not None:
        den = int(m.group("den"))
        if den == 0:
            return None
        value /= den
    if m.group("whole") is not None:
        value += int(m.group("whole"))
    return -value if m.group("sign") == "-" else value


def format_number(value: Fraction | None) -> str | None:
    """Canonical text of a parsed number: ``"18"``, ``"-6"``, ``"5/2"``; None stays None."""
    if value is None:
        return None
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


@dataclass(frozen=True)
class ParsedAnswer:
    """A final answer: its exact value (None = unparseable), the matched text, the method and
    ``span``, the [start, end) characters of the final-answer statement in the response: from
    its marker (``\\boxed{``, ``####``, "answer is") or, for ``last_number``, the number itself,
    to the end of the number read (None when unparseable)."""

    value: Fraction | None
    text: str | None
    method: Literal["boxed", "hashes", "answer_is", "last_number", "none"]
    span: tuple[int, int] | None = None


def _boxed_contents(text: str) -> list[tuple[str, tuple[int, int]]]:
    """Contents of every ``\\boxed{…}`` / ``\\fbox{…}`` with balanced braces, in order, each
    with the [start, end) characters of the whole box."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append((text[m.end() : i - 1], (m.start(), i)))
    return out


def _raw_span(region: str, text: str) -> tuple[int, int]:
    """Where the last-number fallback's number (``text``, read from the cleaned region) is in
    the raw region: its last verbatim occurrence, else the last run of number characters
    (cleaning rewrote it: ``2{,}500``)."""
    if (i := region.rfind(text)) >= 0:
        return i, i + len(text)
    runs = list(re.finditer(r"[-+$]?\d[\d.,{}\\/]*\d|\d", region))
    return runs[-1].span() if runs else (len(region), len(region))


_HASHES = re.compile(r"####")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|answer)[\s*]*(?:is|:|=|would\s+be|will\s+be)[\s*:]*", re.IGNORECASE
)


# A question: a run of non-terminal text ending in "?" (dropped before the last-number fallback).
_QUESTION = re.compile(r"[^.!?\n]*\?")


def answer_region(response: str) -> str:
    """The part of a response that holds its final answer: after the last ``</think>`` if any."""
    return response.rsplit("</think>", 1)[1] if "</think>" in response else response


def parse_final_answer(
    response: str, last_number_fallback: bool = False, finished: bool = True
) -> ParsedAnswer:
    """Parse the final answer of a chain of thought.

    In order, within :func:`answer_region`: the last ``\\boxed{}``; the last ``#### n``; the
    last "answer is n" / "final answer: n" (the first number of the rest of that sentence, or
    after its last ``=``: "the answer is 2 + 1 = 3" gives 3);
    optionally (``last_number_fallback``) the last number outside questions ("What is 1 + 8?"
    echoed back is not an answer), and only for a ``finished`` trace: one cut at the token cap
    stopped mid-thought, and its last number is whatever it was writing. Anything else is
    unparseable (``method="none"``).
    """
    region = answer_region(response)
    off = len(response) - len(region)  # the region's start in the response
    for content, (a, b) in reversed(_boxed_contents(region)):
        if (v := parse_number(content)) is not None:
            return ParsedAnswer(v, content.strip(), "boxed", (off + a, off + b))
    for method, pattern in (("hashes", _HASHES), ("answer_is", _ANSWER_IS)):
        for m in reversed(list(pattern.finditer(region))):
            rest = region[m.end() :].split("\n", 1)[0]
            whole = re.split(r"\.(?!\d)|[;!?]", rest, maxsplit=1)[0]
            # "the answer is 2 + 1 = 3": the result of an equation, not its first operand
            sentence = whole.rsplit("=", 1)[-1]
            if (v := parse_number(sentence)) is not None:
                span = (off + m.start(), off + m.end() + len(whole.rstrip()))
                return ParsedAnswer(v, sentence.strip(), method, span)  # type: ignore[arg-type]
    if last_number_fallback and finished:
        statements = _QUESTION.sub(" ", _clean(region))
        nums = list(_NUMBER.finditer(statements))
        if nums:
            text = nums[-1].group(0).strip()
            a, b = _raw_span(region, text)
            return ParsedAnswer(parse_number(text), text, "last_number", (off + a, off + b))
    return ParsedAnswer(None, None, "none")


def gold_answer(answer: str) -> Fraction:
    """The ground truth of a GSM8K ``answer`` field: the number after its last ``####``."""
    if "####" not in answer:
        raise ValueError("answer has no '#### <number>' line")
    value = parse_number(answer.rsplit("####", 1)[1])
    if value is None:
        raise ValueError(f"no number after '####' in {answer.rsplit('####', 1)[1]!r}")
    return value
