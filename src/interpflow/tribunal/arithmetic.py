"""Easy arithmetic problems with known answers, in the GSM8K record format of the tribunal.

``resources/tribunal/arithmetic.jsonl`` is :func:`addition_problems` written by
``python -m interpflow.tribunal.arithmetic > resources/tribunal/arithmetic.jsonl``
(deterministic: every ordered pair, no randomness; ``tests/tribunal/test_arithmetic.py`` checks
the shipped file equals it). A small model errs on these often enough to give both classes:
SmolLM2-135M-Instruct sums two single digits right about 40% of the time when asked to reason
(issue 12), so the tribunal's correct / incorrect traces come from one problem family.
"""

from __future__ import annotations

import json


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


def to_jsonl(records: list[dict[str, str]]) -> str:
    """One JSON object a line, keys in record order."""
    return "".join(json.dumps(r) + "\n" for r in records)


def main(argv: list[str] | None = None) -> None:
    """Print the easy arithmetic problems (every ordered pair of single digits) as JSONL, the
    GSM8K record format of the tribunal; the shipped file is this output:

        python -m interpflow.tribunal.arithmetic > resources/tribunal/arithmetic.jsonl
    """
    from interpflow.cli import parser as cli_parser

    cli_parser(module="interpflow.tribunal.arithmetic", doc=main.__doc__).parse_args(argv)
    print(to_jsonl(addition_problems()), end="")


if __name__ == "__main__":
    main()
