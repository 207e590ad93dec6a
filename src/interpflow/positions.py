"""The one token-position spec, shared by capture, probes, steering and demos.

A position names where in a prompt+response sequence an activation is read:

=================  =====================================================
``last_prompt``    the last prompt token (the assistant header's newline)
``first_response`` the first response token (same as ``response[0]``)
``last_response``  the last response token
``response[i]``    the i-th response token (0-based)
``response[a..b]`` shorthand for ``response[a]`` … ``response[b]`` (inclusive)
``prompt_mean``    the mean over prompt tokens
``response_mean``  the mean over response tokens
``sequence_mean``  the mean over prompt + response tokens (the whole sequence)
=================  =====================================================

Indices count real tokens only (padding excluded). A position past the end of a short
response does not exist for that row; capture skips it and counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_RESPONSE_RE = re.compile(r"^response\[(\d+)(?:\.\.(\d+))?\]$")


@dataclass(frozen=True)
class Position:
    """One resolved position: a single token (``index``) or a mean over a span."""

    name: str
    kind: Literal["index", "mean"]
    anchor: Literal["prompt", "response", "sequence"]
    offset: int = 0  # for kind="index": >=0 from the span start, -1 = the span's last token

    def token_index(self, prompt_len: int, response_len: int) -> int | None:
        """Absolute token index in the unpadded sequence, or None if it does not exist."""
        if self.kind != "index":
            raise ValueError(f"position {self.name!r} is a mean, not a single token")
        start, length = (0, prompt_len) if self.anchor == "prompt" else (prompt_len, response_len)
        off = length - 1 if self.offset == -1 else self.offset
        if off < 0 or off >= length:
            return None
        return start + off

    def span(self, prompt_len: int, response_len: int) -> tuple[int, int] | None:
        """[start, end) token span averaged by a mean position, or None when empty."""
        if self.kind != "mean":
            raise ValueError(f"position {self.name!r} is a single token, not a mean")
        start, end = {
            "prompt": (0, prompt_len),
            "response": (prompt_len, prompt_len + response_len),
            "sequence": (0, prompt_len + response_len),
        }[self.anchor]
        return (start, end) if end > start else None


def parse_positions(specs: list[str] | tuple[str, ...]) -> list[Position]:
    """Parse position names (expanding ``response[a..b]``); raise ValueError naming a bad one."""
    out: list[Position] = []
    for spec in specs:
        spec = spec.strip()
        if spec == "last_prompt":
            out.append(Position(spec, "index", "prompt", -1))
        elif spec == "first_response":
            out.append(Position(spec, "index", "response", 0))
        elif spec == "last_response":
            out.append(Position(spec, "index", "response", -1))
        elif spec == "prompt_mean":
            out.append(Position(spec, "mean", "prompt"))
        elif spec == "response_mean":
            out.append(Position(spec, "mean", "response"))
        elif spec == "sequence_mean":
            out.append(Position(spec, "mean", "sequence"))
        elif m := _RESPONSE_RE.match(spec):
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) is not None else a
            if b < a:
                raise ValueError(f"position {spec!r}: range end {b} is before its start {a}")
            out.extend(Position(f"response[{i}]", "index", "response", i) for i in range(a, b + 1))
        else:
            raise ValueError(
                f"unknown position {spec!r}; expected one of last_prompt, first_response, "
                "last_response, prompt_mean, response_mean, sequence_mean, response[i], "
                "response[a..b]"
            )
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"positions listed twice: {', '.join(dupes)}")
    return out
