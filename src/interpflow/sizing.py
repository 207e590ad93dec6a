"""What a config declares, as the cost ledger needs it: its study instances, each one's model
and that model's parameter count, and each model-running stage's token budget.

A config is read as snakemake reads it: ``config/config.yaml``, the ``--configfile`` presets
merged over it (a preset means exactly the instances it declares), every instance filled
with its study schema's defaults (``workflow/schemas/``, the one place they live). A model's
parameter count comes from its ``config.json`` where the model is on disk (a directory a rule
builds, ``results/models/<name or source>/``, or a local source directory), else from the
preset's ``models.<name>.shape`` (:func:`interpflow.memory.param_count`). Standard library
and yaml only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from interpflow.config import STUDIES, declared_instances, fill_defaults, resolve_instances
from interpflow.memory import param_count, shape_from_config
from interpflow.packaged import PACKAGED

BASE_CONFIG = Path("config/config.yaml")
SCHEMAS = Path("workflow/schemas")
MODELS_DIR = Path("results/models")

#: rule -> the instance setting that bounds the tokens one of its jobs runs per example (new
#: tokens generated, or the training sequence length); the rules not listed scale by
#: parameters alone
RULE_TOKENS = {
    "deception_generate": "generation.max_new_tokens",
    "deception_transfer_capture": "generation.max_new_tokens",
    "tribunal_generate": "generation.max_new_tokens",
    "inoculation_data": "datagen.max_new_tokens",
    "inoculation_train": "training.max_seq_len",
    "inoculation_em_train": "training.max_seq_len",
    "inoculation_eval": "eval.max_new_tokens",
    "inoculation_em_eval": "eval.max_new_tokens",
    "steering_data": "data.max_new_tokens",
    "steering_adapters": "train.max_seq_len",
}


@dataclass(frozen=True)
class InstanceFacts:
    """One instance as the estimate sees it: its model's declared name, that model's
    parameter count (None: not known) and the token budget of each rule in
    :data:`RULE_TOKENS`."""

    model: str
    params: int | None
    tokens: dict[str, int] = field(default_factory=dict)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping; a missing file or one that is not a mapping is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"config file {path}: not a mapping")
    return data


def merge(base: dict, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base``, mappings key by key (snakemake's
    ``--configfile`` over the Snakefile's ``configfile:``)."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(out.get(key), dict) and isinstance(value, Mapping)
        out[key] = merge(out[key], value) if both else value
    return out


def load_config(
    *, configfiles: list[str | Path], base: str | Path = BASE_CONFIG, schemas: str | Path = SCHEMAS
) -> tuple[dict[str, dict[str, dict]], dict[str, dict]]:
    """(study -> instance name -> its settings with the schema defaults filled, model name ->
    declaration) of ``base`` with ``configfiles`` merged over it; with config files, only the
    instances they declare (as ``workflow/rules/common.smk`` resolves them)."""
    presets = [read_yaml(f) for f in configfiles]
    config = read_yaml(base)
    for preset in presets:
        config = merge(config, preset)
    instances = resolve_instances(config, declared_instances(presets) if presets else None)
    defs = read_yaml(Path(schemas) / "config.schema.yaml")["$defs"]
    for study in STUDIES:
        schema = read_yaml(Path(schemas) / f"{study}.schema.yaml")
        for inst in instances[study].values():
            fill_defaults(inst, schema, defs)
    return instances, dict(config.get("models") or {})


def model_params(
    *, name: str, decl: Mapping[str, Any], models_dir: str | Path = MODELS_DIR
) -> int | None:
    """Parameter count of declared model ``name``: from the ``config.json`` of the directory
    it is loaded from (its stand-in or random-init directory, the directory a rule builds
    from its source, or a local source directory), else from ``decl['shape']`` (not for a
    stand-in, which is smaller than the model it stands for); None when neither is there."""
    source = str(decl.get("source", name))
    dirs = []
    if decl.get("standin") is not None or decl.get("init") == "random":
        dirs.append(Path(models_dir) / name)
    if decl.get("standin") is None:
        built = source == "stub" or source in PACKAGED
        dirs.append(Path(models_dir) / source if built else Path(source))
    stated = decl.get("shape") if decl.get("standin") is None else None
    for d in dirs:
        if (d / "config.json").is_file():
            stated = json.loads((d / "config.json").read_text())
            break
    shape = shape_from_config(config=stated) if stated else None
    return param_count(shape=shape) if shape else None


def dotted(settings: Mapping[str, Any], key: str) -> Any:
    """``settings[a][b]`` for ``key = "a.b"``; None where a part is missing."""
    for part in key.split("."):
        if not isinstance(settings, Mapping) or part not in settings:
            return None
        settings = settings[part]
    return settings


def instance_facts(
    *,
    instances: Mapping[str, Mapping[str, Mapping]],
    models: Mapping[str, Mapping],
    models_dir: str | Path = MODELS_DIR,
) -> dict[tuple[str, str], InstanceFacts]:
    """(study, instance) -> :class:`InstanceFacts` of every instance of a config
    (:func:`load_config`), and ("atlas", model) for each model an instance runs on (the
    atlas files its benchmark under the model's name)."""
    sizes: dict[str, int | None] = {}
    out = {}
    for study, named in instances.items():
        for name, inst in named.items():
            model = str(dotted(inst, "model.name"))
            if model not in sizes:
                decl = models.get(model) or {}
                sizes[model] = model_params(name=model, decl=decl, models_dir=models_dir)
            tokens = {
                rule: int(dotted(inst, key))
                for rule, key in RULE_TOKENS.items()
                if rule.startswith(f"{study}_") and isinstance(dotted(inst, key), int)
            }
            out[(study, name)] = InstanceFacts(model=model, params=sizes[model], tokens=tokens)
            out[("atlas", model)] = InstanceFacts(model=model, params=sizes[model])
    return out


def known_instances(
    *,
    configfiles: list[str | Path],
    presets_dir: str | Path = "config/studies",
    base: str | Path = BASE_CONFIG,
    schemas: str | Path = SCHEMAS,
    models_dir: str | Path = MODELS_DIR,
) -> dict[tuple[str, str], InstanceFacts]:
    """The instances whose benchmark files may serve as measurements: those of the config
    asked about (``configfiles``), of ``base`` and of each preset in ``presets_dir``, read
    from the first of them that declares the instance. An instance of any other config (a
    test config of your own) is not known: its benchmark files are not used."""
    found: dict[tuple[str, str], InstanceFacts] = {}
    sources = [list(configfiles), [], *([p] for p in sorted(Path(presets_dir).glob("*.yaml")))]
    for files in sources:
        instances, models = load_config(configfiles=files, base=base, schemas=schemas)
        facts = instance_facts(instances=instances, models=models, models_dir=models_dir)
        found = facts | found
    return found
