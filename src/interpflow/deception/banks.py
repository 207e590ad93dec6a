"""Prompt banks, one prompt per line, one file per category: reading them and the checks
planning makes (:func:`check_banks`), so an empty or one-class set of banks stops the plan
and duplicates and cross-class conflicts are named, file and line, before any job.

Imported when the Snakefile is parsed: the standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from interpflow.config import ConfigError

#: How many duplicate or conflict locations a planning warning lists before "and N more".
SHOWN = 5


def normalise(text: str) -> str:
    return " ".join(text.split())


def prompt_id(text: str) -> str:
    """Stable id of a prompt: the first 16 hex digits of sha256 of its normalised text."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()[:16]


def bank_lines(path: Path) -> list[tuple[int, str]]:
    """``(line_number, prompt)`` for every non-blank, non-comment line of a bank file (none
    for an empty one). LF and CRLF line endings give the same prompts and line numbers; a UTF-8
    BOM is dropped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt bank {path} does not exist") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = normalise(line)
        if line and not line.startswith("#"):
            rows.append((i, line))
    return rows


def read_bank(path: Path) -> list[tuple[int, str]]:
    """:func:`bank_lines`; a bank with no prompts is an error."""
    rows = bank_lines(path)
    if not rows:
        raise ValueError(f"prompt bank {path} has no prompts")
    return rows


def _listed(sources: list[str]) -> str:
    more = len(sources) - SHOWN
    return ", ".join(sources[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def check_banks(*, paths: Sequence[str | Path], key: str) -> list[str]:
    """Check the bank files of config ``key`` (``<study>.<instance>.banks``) at planning.

    An unreadable or empty bank, or fewer than two banks with prompts (a probe needs two
    classes), raises ConfigError naming the key and the file. Returns warnings naming file and
    line: prompts repeated in one bank (kept once) and prompts in two banks (label noise,
    dropped from both by the prompts stage).
    """
    seen: dict[str, tuple[str, str]] = {}  # id -> (bank, first file:line)
    duplicates: list[str] = []
    conflicts: list[str] = []
    for path in map(Path, paths):
        try:
            rows = bank_lines(path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"config key {key}: {e}") from None
        if not rows:
            raise ConfigError(
                f"config key {key}: prompt bank {path} has no prompts (blank and # lines "
                f"do not count): add prompts, one per line, or drop {path.stem!r} from {key}"
            )
        for line_no, text in rows:
            first = seen.setdefault(prompt_id(text), (path.stem, f"{path}:{line_no}"))
            if first[1] != f"{path}:{line_no}":
                target = duplicates if first[0] == path.stem else conflicts
                target.append(f"{path}:{line_no} (first at {first[1]})")
    classes = sorted({bank for bank, _ in seen.values()})
    if len(classes) < 2:
        raise ConfigError(
            f"config key {key}: a probe needs at least two classes, and only "
            f"{', '.join(classes) or 'none'} has prompts of its own: add a second bank"
        )
    warnings = []
    if duplicates:
        warnings.append(
            f"config key {key}: {len(duplicates)} prompt(s) repeated within a bank (each is "
            f"kept once): {_listed(duplicates)}"
        )
    if conflicts:
        warnings.append(
            f"config key {key}: {len(conflicts)} prompt(s) in two banks (label noise; dropped "
            f"from both): {_listed(conflicts)}"
        )
    return warnings


__all__ = ["bank_lines", "check_banks", "normalise", "prompt_id", "read_bank"]
