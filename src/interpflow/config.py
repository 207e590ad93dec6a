"""Study instances, sweeps, schema defaults and config -> dataclass conversion.

Imported when the Snakefile is parsed (every SLURM job re-parses it), so it uses the standard
library only (and yaml, imported inside the two functions that read config and schema files).

A config declares **models** once by name and, under each study's key, **instances** of that
study by name::

    models:
      stub: {source: stub}
      qwen2.5-7b: {source: Qwen/Qwen2.5-7B-Instruct, chat_template: {enable_thinking: false}}
    inoculation:
      lr:                                   # a sweep: one instance per grid point
        model: stub
        sweep: {training.lr: [1.0e-4, 1.0e-3], training.seed: [0, 1]}

An entry with a ``sweep`` key expands to the grid's instances, named
``<entry>-<key><value>-...`` after the last part of each swept key (``lr-lr0.0001-seed0``),
each a copy of the entry with the dotted keys set. Everything an instance makes lives under
``results/<study>/<instance>/``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

STUDIES = ("deception", "tribunal", "inoculation", "steering")


class ConfigError(ValueError):
    """A config that cannot be run; the message names the config key."""


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def instance_name(base: str, point: Mapping[str, Any]) -> str:
    """Readable name of one grid point: ``base-lr0.001-seed1`` (last part of each key)."""
    parts = [base]
    for key, value in point.items():
        parts.append(f"{key.rsplit('.', 1)[-1]}{_fmt(value)}")
    return "-".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "_".join(_fmt(v) for v in value)
    return str(value).replace("/", "_")


def set_dotted(cfg: dict, key: str, value: Any, where: str) -> None:
    """``cfg[a][b][c] = value`` for ``key = "a.b.c"`` (creating the dicts on the way)."""
    *parents, last = key.split(".")
    node = cfg
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {where}: {'.'.join(parents[: i + 1])} is not a mapping")
    node[last] = value


def expand_sweeps(study: str, entries: Mapping[str, Any]) -> dict[str, dict]:
    """Instances of one study: plain entries as they are, sweep entries expanded."""
    out: dict[str, dict] = {}
    for base, entry in (entries or {}).items():
        where = f"{study}.{base}"
        if not NAME.match(str(base)):
            raise ConfigError(
                f"config key {where}: instance names use letters, digits and _ . + - "
                "(they become directory names)"
            )
        if not isinstance(entry, Mapping):
            raise ConfigError(f"config key {where}: an instance is a mapping of settings")
        entry = dict(entry)
        grid = entry.pop("sweep", None)
        if grid is None:
            _add(out, base, entry, where)
            continue
        if not isinstance(grid, Mapping) or not grid:
            raise ConfigError(f"config key {where}.sweep: a non-empty mapping of key: [values]")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"config key {where}.sweep.{key}: a non-empty list of values")
        for combo in itertools.product(*grid.values()):
            point = dict(zip(grid, combo, strict=True))
            inst = copy.deepcopy(entry)
            for key, value in point.items():
                set_dotted(inst, key, value, f"{where}.sweep.{key}")
            _add(out, instance_name(base, point), inst, where)
    return out


def _add(out: dict, name: str, inst: dict, where: str) -> None:
    if name in out:
        raise ConfigError(f"config key {where}: instance {name!r} is declared twice")
    out[name] = inst


def declared_instances(configs: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Study -> names of the instances the given config files declare (sweeps expanded)."""
    out: dict[str, set[str]] = {s: set() for s in STUDIES}
    for cfg in configs:
        for study in STUDIES:
            out[study] |= set(expand_sweeps(study, (cfg or {}).get(study) or {}))
    return out


#: The first line of a config file that layers its instances over same-named instances of
#: the ``--configfile`` before it (as a rehearsal's overlay does, :mod:`interpflow.rehearse`);
#: any other two command-line files that declare one instance are an error.
OVERLAY_MARKERS = ("# interpflow: overlay",)


def is_overlay(*, text: str) -> bool:
    """Whether a config file's ``text`` starts with one of :data:`OVERLAY_MARKERS`."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    return first.startswith(OVERLAY_MARKERS)


def check_layering(*, files: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
    """Raise ConfigError when two of the command line's config files (``(path, text, loaded
    mapping)``, in order) declare the same instance, which would merge into a hybrid of both;
    a file marked as an overlay (:func:`is_overlay`) may layer over those before it."""
    owner: dict[tuple[str, str], str] = {}
    for path, text, cfg in files:
        overlay = is_overlay(text=text)
        for study in STUDIES:
            for name in expand_sweeps(study, (cfg or {}).get(study) or {}):
                first = owner.setdefault((study, name), path)
                if first != path and not overlay:
                    raise ConfigError(
                        f"config key {study}.{name}: declared in both {first} and {path}, "
                        f"which would merge into one hybrid instance: rename it in one file, "
                        f"or make {path} an overlay of {first} by starting it with the line "
                        f"'{OVERLAY_MARKERS[0]}'"
                    )


def layered_config_files(
    configfiles: Iterable[Any], overwrite: Iterable[Any] = ()
) -> list[tuple[str, str, dict]]:
    """``(path, text, loaded mapping)`` of every config file in the order snakemake layers
    them: the Snakefile's ``configfiles`` (``workflow.configfiles``), then the command line's
    (``--configfile``: ``workflow.overwrite_configfiles``); a path under the working directory
    relative to it. yaml is read here, imported on the call."""
    import os
    from pathlib import Path

    import yaml

    cli = [str(f) for f in overwrite]
    files = [str(f) for f in configfiles if str(f) not in cli] + cli
    return [
        (os.path.relpath(f) if Path(f).resolve().is_relative_to(Path.cwd()) else f, text, cfg)
        for f in files
        for text in [Path(f).read_text()]
        for cfg in [yaml.safe_load(text) or {}]
    ]


def fill_instance_defaults(instances: Mapping[str, Mapping[str, dict]], schemas: Any) -> Mapping:
    """``instances`` (study -> name -> config), each filled in place with its study schema's
    defaults (snakemake's validate() does not reach through the instance maps' ``$ref`` keys):
    ``<schemas>/<study>.schema.yaml`` is the one place they live, the shared ``$defs`` in
    ``<schemas>/config.schema.yaml``."""
    from pathlib import Path

    import yaml

    schemas = Path(schemas)
    defs = yaml.safe_load((schemas / "config.schema.yaml").read_text())["$defs"]
    for study in STUDIES:
        schema = yaml.safe_load((schemas / f"{study}.schema.yaml").read_text())
        for inst in instances[study].values():
            fill_defaults(inst, schema, defs)
    return instances


def resolve_instances(
    config: dict, only: Mapping[str, set[str]] | None = None
) -> dict[str, dict[str, dict]]:
    """Expand every study's sweeps in ``config`` in place; with ``only`` (the instances the
    command line's config files declare), drop the others, so a preset means exactly the
    instances it declares. Returns ``config`` restricted to the studies."""
    for study in STUDIES:
        instances = expand_sweeps(study, config.get(study) or {})
        if only is not None:
            instances = {k: v for k, v in instances.items() if k in only[study]}
        config[study] = instances
    return {s: config[s] for s in STUDIES}


def schema_defaults(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> Any:
    """The value a JSON Schema (as the config schema writes it) fills in for an empty object:
    ``default`` where given, else the defaults of its ``properties`` (through ``$ref``)."""
    defs = schema.get("$defs", defs or {})
    if "$ref" in schema:
        return schema_defaults(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "properties" in schema:
        base = copy.deepcopy(schema.get("default", {}))
        for key, sub in schema["properties"].items():
            value = schema_defaults(sub, defs)
            if value is not _MISSING:
                base.setdefault(key, value)
        return base
    return copy.deepcopy(schema["default"]) if "default" in schema else _MISSING


_MISSING = object()


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def fill_defaults(data: dict, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict:
    """Fill ``data`` in place with the schema's defaults, as JSON Schema's ``default`` means:
    a declared property that is missing gets its default; a given object is filled through its
    declared ``properties`` only (a free-form mapping the user gave, e.g. a dict of eval sets,
    is kept as given, not merged with the default's entries). Returns ``data``."""
    schema = _resolve(schema, defs)
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, defs)
        if key not in data:
            value = schema_defaults(sub, defs)
            if value is not _MISSING:
                data[key] = value
        elif isinstance(data[key], dict) and "properties" in sub:
            fill_defaults(data[key], sub, defs)
    return data


def from_config(cls: type, data: Mapping[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a config mapping: lists become tuples where the field is a
    tuple, nested dataclass fields are built recursively, keys the class lacks are an error
    naming the config key. Missing keys take the dataclass default."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"config key {where or cls.__name__}: unknown keys {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except (TypeError, ValueError):
                continue
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_config(hint, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if args and len(args) == len(value):
            return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


__all__ = [
    "OVERLAY_MARKERS",
    "STUDIES",
    "ConfigError",
    "check_layering",
    "declared_instances",
    "expand_sweeps",
    "fill_defaults",
    "from_config",
    "instance_name",
    "is_overlay",
    "resolve_instances",
    "schema_defaults",
    "set_dotted",
]
