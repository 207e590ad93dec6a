"""Rewrite the version pins of envs/*.yaml from the lock (constraints.txt).

The lock is the one source of versions: `make lock` compiles it from pyproject.toml and then
runs this script, so the conda envs pin exactly what pip installs and the test suite runs.
Only the pins change; every entry's name, order and comment stay. An entry the lock does not
hold is an error (add it to pyproject.toml, or drop it from the env).

    python envs/pin.py            # rewrite envs/*.yaml in place
    python envs/pin.py --check    # exit 1 and list the differences instead
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
# `      - name==1.2.3  # comment` (pip list) or `  - python=3.11` (conda): name, pin, rest.
ENTRY = re.compile(r"^(?P<head>\s*-\s+)(?P<name>[A-Za-z0-9_.\-]+)(?P<op>==?)(?P<ver>[^\s#]+)")
CONDA_ONLY = {"python", "pip"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Normalised package name -> pinned version, from a pip-compile/uv lock."""
    pins = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or ";" in version:
            raise ValueError(f"{path}:{n}: expected 'name==version', got {line!r}")
        pins[norm(name)] = version.strip()
    return pins


def repin(text: str, pins: dict[str, str], where: str) -> str:
    """``text`` (an env file) with each pip pin set to the lock's version."""
    out = []
    for n, line in enumerate(text.splitlines(keepends=True), start=1):
        m = ENTRY.match(line)
        if m and m["op"] == "==":
            name = norm(m["name"])
            if name not in pins:
                raise KeyError(f"{where}:{n}: {m['name']} is not in {LOCK.name}")
            line = line[: m.start("ver")] + pins[name] + line[m.end("ver") :]
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    pins = read_lock()
    stale = []
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        old = env.read_text()
        new = repin(old, pins, str(env.relative_to(ROOT)))
        if new != old:
            stale.append(env.relative_to(ROOT))
            if not check:
                env.write_text(new)
    if check and stale:
        print(f"pins differ from {LOCK.name} in: {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    for env in stale:
        print(f"repinned {env}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
