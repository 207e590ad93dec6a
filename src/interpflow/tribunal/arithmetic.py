"""Easy arithmetic problems with known answers, in the GSM8K record format of the tribunal.

``resources/tribunal/arithmetic.jsonl`` is :func:`addition_problems` written by
``python -m interpflow.tribunal.arithmetic > resources/tribunal/arithmetic.jsonl``
(deterministic: every ordered pair, no randomness; ``tests/tribunal/test_arithmetic.py`` checks
the shipped file equals it). A small model errs on these often enough to give both classes:
SmolLM2-135M-Instruct sums two single digits right about 40% of the time when asked to reason
(issue 12), so the tribunal's correct / incorrect traces come from one problem family.

``resources/tribunal/harder.jsonl`` is :func:`harder_problems` (multi-digit sums and
differences, a one-digit times a two-digit number, three-term chains; seeded, in the
proportions of :data:`HARDER_COUNTS`) followed by the
hand-written multi-step word problems of ``resources/tribunal/word_problems.jsonl`` (each
answer a worked solution of ``a op b = c`` lines that the test re-computes), written by
``python -m interpflow.tribunal.arithmetic --harder resources/tribunal/word_problems.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path


def addition_problems(lo: int = 1, hi: int = 9) -> list[dict[str, str]]:
    """Every ordered pair ``a + b`` with ``lo <= a, b <= hi`` as ``{id, question, answer}``
    records (``answer`` ends in ``#### <sum>``), ids ``add-<a>-<b>``."""
    return [
        {
            "id": f"add-{a}-{b}",
            "question": f"What is {a} + {b}?",
            "answer": f"{a} + {b} = {a + b}.\n#### {a + b}",
        }
        for a in range(lo, hi + 1)
        for b in range(lo, hi + 1)
    ]


#: the kinds of :func:`harder_problems` and how many of each: most of the kinds SmolLM2-135M
#: sometimes gets right (sums with a two-digit term, products; ~1 in 5 in a first 48 traces),
#: fewer of those it never did (differences, chains), so both classes come at a CPU-sized pace
HARDER_COUNTS = {"add2": 80, "add21": 80, "mul": 80, "sub2": 30, "chain": 30}
HARDER_KINDS = tuple(HARDER_COUNTS)


def _harder_one(kind: str, rng) -> tuple[str, str, int]:
    """One problem of ``kind`` drawn with ``rng``: its id suffix, its question's expression, its
    worked solution's last line value (the gold answer)."""

    def r(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))

    if kind == "add2":
        a, b = r(10, 99), r(10, 99)
        return f"{a}-{b}", f"{a} + {b}", a + b
    if kind == "add21":
        a, b = r(10, 99), r(2, 9)
        return f"{a}-{b}", f"{a} + {b}", a + b
    if kind == "sub2":
        a, b = sorted((r(10, 99), r(10, 99)), reverse=True)
        return f"{a}-{b}", f"{a} - {b}", a - b
    if kind == "mul":
        a, b = r(2, 9), r(11, 24)
        return f"{a}-{b}", f"{a} * {b}", a * b
    a, b, c = r(10, 50), r(2, 9), r(2, 9)
    return f"{a}-{b}-{c}", f"{a} + {b} - {c}", a + b - c


def harder_problems(seed: int = 0) -> list[dict[str, str]]:
    """:data:`HARDER_COUNTS` problems of each kind (interleaved, drawn with ``seed``; a
    repeated draw is skipped) as ``{id, question, answer}`` records: sums of two two-digit
    numbers and of a two-digit and a one-digit number, two-digit differences (never
    negative), a one-digit times a two-digit number (11-24), and ``a + b - c`` chains of two
    steps; ids ``<kind>-<operands>``, answers exact integers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    counts = dict.fromkeys(HARDER_KINDS, 0)
    for _ in range(100 * sum(HARDER_COUNTS.values())):  # bounded: each kind has >100 problems
        if all(counts[k] >= n for k, n in HARDER_COUNTS.items()):
            break
        for kind in HARDER_KINDS:
            suffix, expr, value = _harder_one(kind, rng)
            pid = f"{kind}-{suffix}"
            if counts[kind] >= HARDER_COUNTS[kind] or pid in seen:
                continue
            seen.add(pid)
            counts[kind] += 1
            out.append({"id": pid, "question": f"What is {expr}?",
                        "answer": f"{expr} = {value}.\n#### {value}"})  # fmt: skip
    return out


def to_jsonl(records: list[dict[str, str]]) -> str:
    """One JSON object a line, keys in record order."""
    return "".join(json.dumps(r) + "\n" for r in records)


def main(argv: list[str] | None = None) -> None:
    """Print the easy arithmetic problems (every ordered pair of single digits) as JSONL, the
    GSM8K record format of the tribunal; the shipped file is this output. With --harder, the
    harder problems and the hand-written word problems (resources/tribunal/harder.jsonl):

        python -m interpflow.tribunal.arithmetic > resources/tribunal/arithmetic.jsonl
        python -m interpflow.tribunal.arithmetic --harder resources/tribunal/word_problems.jsonl \\
            > resources/tribunal/harder.jsonl
    """
    from interpflow.cli import parser as cli_parser

    parser = cli_parser(module="interpflow.tribunal.arithmetic", doc=main.__doc__)
    parser.add_argument(
        "--harder",
        metavar="WORD_PROBLEMS",
        help="print harder_problems() followed by the word problems of this JSONL file",
    )
    args = parser.parse_args(argv)
    if args.harder is None:
        print(to_jsonl(addition_problems()), end="")
        return
    lines = Path(args.harder).read_text().splitlines()
    words = [json.loads(line) for line in lines if line.strip()]
    print(to_jsonl(harder_problems() + words), end="")


if __name__ == "__main__":
    main()
