"""Checks made when the workflow is planned (``snakemake -n`` as much as a real run), so a
config that cannot run stops before any job, in one line per problem naming the dotted config
key and the fix: schema errors (:func:`schema_error_lines`), layers against the model's depth
and against what is captured (:func:`check_layers`, :func:`check_captured`), response
positions against the generation's length (:func:`check_positions_fit`), hub models missing
from the local cache when the hub is offline (:func:`hub_cache_message`).

Imported when the Snakefile is parsed: the standard library and yaml at module level only (jsonschema,
which snakemake itself uses for validation, is imported where a schema is checked).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from interpflow.config import ConfigError
from interpflow.positions import parse_positions

#: Values of HF_HUB_OFFLINE that mean offline (as huggingface_hub reads it).
_TRUE = {"1", "ON", "YES", "TRUE"}


def suggestion(word: str, options: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``options`` to ``word``, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def declaring_file(path: Sequence[Any], sources: Sequence[tuple[str, Mapping]]) -> str:
    """The last of ``sources`` (``(file, its mapping)``, in the order they are layered) that
    declares the longest prefix of ``path``; ``--config`` when none declares even its first key."""
    for depth in range(len(path), 0, -1):
        for name, data in reversed(sources):
            node: Any = data
            for key in path[:depth]:
                if not isinstance(node, Mapping) or key not in node:
                    break
                node = node[key]
            else:
                return name
    return "--config"


def _error_lines(error: Any, sources: Sequence[tuple[str, Mapping]]) -> list[str]:
    """One line per problem of one jsonschema ``error``: ``file: dotted.key: message``."""
    path = [str(p) for p in error.absolute_path]
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = list(schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        return [
            f"{declaring_file([*path, k], sources)}: {'.'.join([*path, str(k)])}: unknown key"
            + (suggestion(k, known) or (f" (known: {', '.join(known)})" if known else ""))
            for k in unknown
        ]
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    if error.validator == "enum" and isinstance(error.instance, str):
        message += suggestion(error.instance, [v for v in error.validator_value if v])
    elif error.validator in ("minItems", "maxItems"):
        bound = "at least" if error.validator == "minItems" else "at most"
        message = f"{error.instance!r} has {len(error.instance)} item(s), needs {bound} "
        message += f"{error.validator_value}"
        if schema.get("description"):
            message += f" ({schema['description'].split('. ')[0].rstrip('.')})"
    where = ".".join(path) or "(top level)"
    return [f"{declaring_file(path, sources)}: {where}: {message}"]


def schema_error_lines(
    *, config: Mapping[str, Any], schema_file: str | Path, sources: Sequence[tuple[str, Mapping]]
) -> list[str]:
    """Every error of ``config`` against ``schema_file`` (a YAML JSON Schema whose relative
    ``$ref`` s name files beside it), one line each, ``file: dotted.key: message (did you mean
    ...)``, sorted by key; ``sources`` are the config files in the order they are layered."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schema_file = Path(schema_file).resolve()

    def load(uri: str) -> Resource:
        name = uri.removeprefix(schema_file.parent.as_uri() + "/")
        return Resource.from_contents(yaml.safe_load((schema_file.parent / name).read_text()))

    schema = yaml.safe_load(schema_file.read_text())
    schema["$id"] = schema_file.as_uri()
    registry = Registry(retrieve=load).with_resource(schema["$id"], Resource.from_contents(schema))
    validator = Draft202012Validator(schema, registry=registry)
    lines: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.path]):
        lines += [line for line in _error_lines(error, sources) if line not in lines]
    return lines


def check_layers(*, key: str, layers: Sequence[int], depth: int | None, depth_from: str) -> None:
    """Every layer of config ``key`` is a decoder block of a model of ``depth`` layers (as
    ``depth_from`` states it); None = depth unknown at planning (not checked)."""
    if depth is None:
        return
    beyond = [layer for layer in layers if not 0 <= layer < depth]
    if beyond:
        raise ConfigError(
            f"config key {key}: layer(s) {beyond} beyond the model's {depth} decoder layers "
            f"({depth_from}): use layers 0..{depth - 1} (0-based)"
        )


def check_captured(
    *, key: str, what: str, wanted: Sequence[Any], captured_key: str, captured: Sequence[Any]
) -> None:
    """The ``what`` (layer, position) that config ``key`` reads is what the capture stores
    (config ``captured_key``); else the stage that reads it would fail after generation."""
    missing = [w for w in wanted if w not in captured]
    if missing:
        raise ConfigError(
            f"config key {key}: {what} {', '.join(map(str, missing))} is not captured "
            f"({captured_key}: "
            f"{list(captured)}): add {', '.join(map(str, missing))} to {captured_key}, or set "
            f"{key} to what it captures"
        )


def check_positions_fit(
    *, key: str, positions: Sequence[str], tokens_key: str, max_new_tokens: int
) -> None:
    """The positions of config ``key`` parse, and each ``response[i]`` can exist within
    ``max_new_tokens`` (config ``tokens_key``) new tokens; else every row would skip it."""
    try:
        parsed = parse_positions(list(positions))
    except ValueError as e:
        raise ConfigError(f"config key {key}: {e}") from None
    needed = max(
        (p.offset + 1 for p in parsed if p.kind == "index" and p.anchor == "response"), default=0
    )
    if needed > max_new_tokens:
        raise ConfigError(
            f"config key {key}: response[{needed - 1}] needs {needed} response tokens, but "
            f"{tokens_key} is {max_new_tokens}, so every row would skip it: set {tokens_key} "
            f"to at least {needed}, or drop the positions past response[{max_new_tokens - 1}]"
        )


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE says the hub is not to be reached (as huggingface_hub reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def hub_cache_dir() -> Path:
    """The local hub cache huggingface_hub reads: HF_HUB_CACHE, else HF_HOME/hub, else
    XDG_CACHE_HOME/huggingface/hub (~/.cache by default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(home).expanduser() / "hub"


def hub_model_cached(*, repo_id: str, revision: str | None, cache: Path) -> bool:
    """Whether ``cache`` holds a snapshot of model ``repo_id`` at ``revision`` (None = the
    default branch) with its config.json; reads directory entries only, never the network."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    if commit and (repo / "snapshots" / commit / "config.json").is_file():
        return True
    return revision is None and any((repo / "snapshots").glob("*/config.json"))


def hub_cache_message(*, repo_id: str, revision: str | None, key: str) -> str | None:
    """The error for hub model ``repo_id`` (config ``key``) when HF_HUB_OFFLINE is set and
    the local cache lacks it (a job would fail loading it); None when it can load."""
    cache = hub_cache_dir()
    if not hub_offline() or hub_model_cached(repo_id=repo_id, revision=revision, cache=cache):
        return None
    rev = f" --revision {revision}" if revision else ""
    return (
        f"config key {key}: hub model {repo_id!r} is not in the local cache ({cache}) and "
        f"HF_HUB_OFFLINE is set: fetch it first where the network is (huggingface-cli download "
        f"{repo_id}{rev}, with the same HF_HOME / HF_HUB_CACHE as the jobs), or set {key} to "
        f"a local directory"
    )


__all__ = [
    "check_captured",
    "check_layers",
    "check_positions_fit",
    "declaring_file",
    "hub_cache_dir",
    "hub_cache_message",
    "hub_model_cached",
    "hub_offline",
    "schema_error_lines",
    "suggestion",
]
