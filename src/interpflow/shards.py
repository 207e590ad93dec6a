"""The resumable shards of :func:`interpflow.generate.generate_and_capture`: where they live,
how each is seeded, and which finished ones are intact (their files match the sha256 record
written with them) and can be reused by a rerun."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from interpflow.artifacts import stable_hash


def shard_dir_for(generations_path: str | Path) -> Path:
    p = Path(generations_path)
    return p.with_name(p.name + ".shards")


def shard_seed(seed: int, shard: int) -> int:
    return int(stable_hash([seed, shard], 8), 16) % (2**31 - 1)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def shard_files(shards: Path, i: int) -> tuple[Path, Path, Path]:
    """Shard ``i``'s generations, activations and checksum files."""
    return tuple(
        shards / f"{i:05d}.{n}"
        for n in ("generations.parquet", "activations.parquet", "sha256.json")
    )


def shard_damage(shards: Path, i: int, with_activations: bool) -> str | None:
    """Why finished shard ``i`` cannot be reused (naming the file), or None if it is intact."""
    gen_file, act_file, sums_file = shard_files(shards, i)
    try:
        sums = dict(json.loads(sums_file.read_text()))
    except (OSError, ValueError, TypeError) as e:
        return f"{sums_file} is unreadable ({type(e).__name__}: {e})"
    for f in [gen_file, act_file] if with_activations else [gen_file]:
        if not f.exists():
            return f"{f} is missing"
        if file_sha256(f) != sums.get(f.name):
            return f"{f} is damaged (its sha256 differs from the one in {sums_file.name})"
    return None


def finished_shards(shards: Path, n_shards: int, with_activations: bool, log) -> list[int]:
    """Indices of the finished, intact shards; damaged ones are removed to be redone."""
    done = []
    for i in range(n_shards):
        if not shard_files(shards, i)[0].exists():  # the generations file is written last
            continue
        damage = shard_damage(shards, i, with_activations)
        if damage is None:
            done.append(i)
            continue
        log(f"warning: {damage}: generating shard {i + 1}/{n_shards} again")
        for f in shard_files(shards, i):
            f.unlink(missing_ok=True)
    return done
