"""Every `python -m interpflow.*` entry point's --help names the module as it is run and reads
as plain text (interpflow.cli): no Sphinx roles, no rst literals, examples kept one per line."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from interpflow.cli import plain

SRC = Path(__file__).resolve().parents[1] / "src"
MARKUP = re.compile(r":(func|mod|data|class|meth|attr|exc|obj):`|``")


def _is_main_block(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def entry_points() -> list[str]:
    """Every module of src/interpflow with an `if __name__ == "__main__":` block."""
    found = []
    for path in sorted((SRC / "interpflow").rglob("*.py")):
        if any(_is_main_block(node) for node in ast.parse(path.read_text()).body):
            found.append(".".join(path.relative_to(SRC).with_suffix("").parts))
    return found


def test_the_entry_points_are_found():
    assert {"interpflow.ledger", "interpflow.findings", "interpflow.config_id"} <= set(
        entry_points()
    )


@pytest.mark.parametrize("module", entry_points())
def test_help_names_the_module_and_has_no_sphinx_markup(module):
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: python -m {module} "), out.stdout.splitlines()[:1]
    assert not MARKUP.search(out.stdout), MARKUP.search(out.stdout).group(0)


def test_plain_drops_roles_and_literals_and_keeps_lines():
    doc = """Sums :func:`ledger` rows of ``benchmarks/``
    (:mod:`~interpflow.sizing`).

        python -m interpflow.ledger judges   # per judge
    """
    assert plain(doc) == (
        "Sums ledger rows of benchmarks/\n(interpflow.sizing).\n\n"
        "    python -m interpflow.ledger judges   # per judge"
    )
