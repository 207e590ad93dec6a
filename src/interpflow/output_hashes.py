"""A run's outputs as a sorted manifest of content hashes, for byte-identity checks.

A refactor that keeps behaviour leaves every output the same: hash the results of a run before
and after, and compare. What a rerun changes by itself is left out: the run ledger and the
judge ledger (wall seconds), logs and benchmark files (outside ``results/``), snakemake's
timestamp files, and in JSON, CSV and parquet every key or column named for time (seconds,
timestamps, wall times: :data:`VOLATILE`) or for the code hash (a param that any code change
moves), and the durations of the findings table (.md, .html). Parquet files are compared by
content (schema and rows), not bytes; SQLite caches by their rows; safetensors by tensors and
metadata; CSV by columns by name. What a run writes in no fixed order is compared unordered:
set-valued JSON lists (:data:`SET_KEYS`), safetensors headers, CSV column order. Every other
file by its bytes. The working directory's absolute path is replaced
by ``<work>`` wherever it appears, so two copies of the repository compare equal.

    python -m interpflow.output_hashes results -o /tmp/hashes_before.json
    python -m interpflow.output_hashes results --compare /tmp/hashes_before.json
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from interpflow.cli import parser as cli_parser

#: a key or column whose name says time (``elapsed_s``, ``written_at``, ``wall_seconds``, ...)
#: or the code hash (``code``): left out of the hash
VOLATILE = re.compile(
    r"seconds|elapsed|timestamp"
    r"|(^|_)(s|sec|secs|wall|time|at|date|duration|started|finished|created|updated)$"
    r"|^(code|code_hash)$",
    re.IGNORECASE,
)
#: files left out whole: the cost ledgers (wall seconds per rule), snakemake's timestamps
SKIPPED_NAMES = {"ledger.csv", "judge_ledger.csv", ".snakemake_timestamp"}
#: endings of files left out whole: SQLite's transient write-ahead log and shared memory
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal")
#: JSON keys whose list is a set written in no fixed order (PEFT's target_modules): sorted
SET_KEYS = {"target_modules"}
#: a duration as the findings table writes it (its cost column: "4.3 min"), in .md and .html
DURATION = re.compile(rb"\b\d+(?:\.\d+)? (?:min|s|h)\b")
#: folders left out whole (under the results directory)
SKIPPED_DIRS = {"logs", "benchmarks", ".snakemake", "__pycache__"}


def volatile(key: str) -> bool:
    """Whether a key or column named ``key`` is left out of the hash (time or code hash)."""
    return bool(VOLATILE.search(key))


def stable(value: Any, work: str) -> Any:
    """``value`` (parsed JSON) with volatile keys dropped at any depth and ``work`` replaced by
    ``<work>`` in strings."""
    if isinstance(value, dict):
        return {
            k: sorted(stable(v, work), key=repr) if k in SET_KEYS and isinstance(v, list)
            else stable(v, work)
            for k, v in value.items()
            if not volatile(str(k))
        }  # fmt: skip
    if isinstance(value, list):
        return [stable(v, work) for v in value]
    if isinstance(value, str) and work:
        return value.replace(work, "<work>")
    return value


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def json_digest(path: Path, work: str) -> str:
    """sha256 of a JSON file's content without its volatile keys."""
    return _digest(stable(json.loads(path.read_text()), work))


def csv_digest(path: Path, work: str) -> str:
    """sha256 of a CSV/TSV file's columns by name (their order left out: a pivot may put them
    in any order), rows in order, without its volatile columns."""
    text = path.read_text().replace(work, "<work>") if work else path.read_text()
    rows = list(csv.reader(io.StringIO(text), delimiter="\t" if path.suffix == ".tsv" else ","))
    if not rows:
        return _digest([])
    keep = [i for i, name in enumerate(rows[0]) if not volatile(name)]
    return _digest(
        {rows[0][i]: [row[i] if i < len(row) else None for row in rows[1:]] for i in keep}
    )


def safetensors_digest(path: Path, work: str) -> str:
    """sha256 of a safetensors file's tensors (name, dtype, shape, bytes; by name) and its
    metadata (keys sorted): the header's order left out."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    h = hashlib.sha256()
    h.update(_digest(stable(header.pop("__metadata__", {}), work)).encode())
    for name in sorted(header):
        t = header[name]
        begin, end = t["data_offsets"]
        h.update(f"{name}\0{t['dtype']}\0{t['shape']}\0".encode() + body[begin:end])
    return h.hexdigest()


def text_digest(path: Path, work: str) -> str:
    """sha256 of a Markdown/HTML file's bytes with every duration (``4.3 min``) masked."""
    data = path.read_bytes()
    if work:
        data = data.replace(work.encode(), b"<work>")
    return hashlib.sha256(DURATION.sub(b"<duration>", data)).hexdigest()


def parquet_digest(path: Path, work: str) -> str:
    """sha256 of a parquet file's schema (names, types) and rows, without volatile columns
    and the file's metadata."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    table = table.select([n for n in table.column_names if not volatile(n)])
    schema = [(f.name, str(f.type)) for f in table.schema]
    return _digest([schema, stable(table.to_pylist(), work)])


def sqlite_digest(path: Path, work: str) -> str:
    """sha256 of every table's rows (sorted) in a SQLite file, without volatile columns."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        content = {}
        for table in sorted(tables):
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            keep = [c for c in cols if not volatile(c)]
            select = ", ".join(f'"{c}"' for c in keep)
            rows = con.execute(f'SELECT {select} FROM "{table}"').fetchall()
            content[table] = sorted(stable([list(r) for r in rows], work), key=repr)
    finally:
        con.close()
    return _digest(content)


def bytes_digest(path: Path, work: str) -> str:
    """sha256 of a file's bytes (``work`` replaced by ``<work>``)."""
    data = path.read_bytes()
    if work:
        data = data.replace(work.encode(), b"<work>")
    return hashlib.sha256(data).hexdigest()


DIGESTS = {
    ".json": json_digest,
    ".csv": csv_digest,
    ".tsv": csv_digest,
    ".parquet": parquet_digest,
    ".sqlite": sqlite_digest,
    ".safetensors": safetensors_digest,
    ".md": text_digest,
    ".html": text_digest,
}


def output_files(results: Path) -> Iterable[Path]:
    """The files under ``results`` that are hashed, sorted (skipped names and folders left out)."""
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results)
        if not path.is_file() or path.name in SKIPPED_NAMES or path.name.endswith(SKIPPED_SUFFIXES):
            continue
        if SKIPPED_DIRS.intersection(rel.parts[:-1]):
            continue
        yield path


def manifest(results: str | Path, work: str | None = None) -> dict[str, str]:
    """{path relative to ``results``: content hash} of every output file, sorted by path.
    ``work`` (default: the parent of ``results``, the working directory) is replaced by
    ``<work>`` in contents."""
    results = Path(results).resolve()
    work = str(results.parent) if work is None else work
    return {
        str(path.relative_to(results)): DIGESTS.get(path.suffix, bytes_digest)(path, work)
        for path in output_files(results)
    }


def compare(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """Paths only in ``before`` (missing), only in ``after`` (added), in both with different
    hashes (changed), and in both with the same (identical)."""
    return {
        "missing": sorted(before.keys() - after.keys()),
        "added": sorted(after.keys() - before.keys()),
        "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
        "identical": sorted(k for k in before.keys() & after.keys() if before[k] == after[k]),
    }


def main(argv: list[str] | None = None) -> int:
    """Write (``-o``) or print a results directory's manifest; with ``--compare``, exit 1
    unless it equals the given manifest."""
    ap = cli_parser(module="interpflow.output_hashes", doc=__doc__)
    ap.add_argument("results", help="the results directory (e.g. results)")
    ap.add_argument("-o", "--out", help="write the manifest (JSON) here")
    ap.add_argument("--compare", help="a manifest to compare with")
    args = ap.parse_args(argv)
    hashes = manifest(args.results)
    text = json.dumps(hashes, indent=1, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    if not args.compare:
        if not args.out:
            sys.stdout.write(text)
        return 0
    diff = compare(json.loads(Path(args.compare).read_text()), hashes)
    for kind in ("missing", "added", "changed"):
        for path in diff[kind]:
            print(f"{kind}: {path}")
    n = len(diff["identical"])
    print(
        f"{len(hashes)} files hashed, {n} identical, {len(hashes) - n} differ or are new, "
        f"{len(diff['missing'])} missing"
    )
    return 0 if n == len(hashes) and not diff["missing"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
