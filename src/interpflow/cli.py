"""The argument parser of every ``python -m interpflow.<module>`` entry point.

Its usage line names the module as it is run (``python -m interpflow.<module>``, not the
file), and its description is the module's docstring as written (line breaks kept, so the
examples stay one per line) with the Sphinx roles and literals turned into plain text.
"""

from __future__ import annotations

import argparse
import inspect
import re

_ROLE = re.compile(r":(?:func|mod|data|class|meth|attr|exc|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str) -> str:
    """``text`` without reStructuredText markup: :func:`x` and ``x`` become x."""
    text = _ROLE.sub(r"\1", inspect.cleandoc(text or ""))
    return _LITERAL.sub(r"\1", text)


def parser(*, module: str, doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser for ``python -m <module>`` described by ``doc`` (a docstring)."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=plain(doc or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
