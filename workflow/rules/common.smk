# Glue every study uses: the config's instances (validated, defaults filled), the params
# functions that read them, the code hash. Every SLURM job re-parses this file: standard
# library, yaml and snakemake only here (the interpflow modules imported below import nothing
# heavier), no big file reads. Models: model_sources.smk; judges: judges.smk; the checks that
# stop a plan: planning_checks.smk.

import os
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from interpflow.codehash import code_hash as _code_hash
from interpflow.config import (
    ConfigError,
    check_layering,
    declared_instances,
    fill_instance_defaults,
    layered_config_files,
    resolve_instances,
)
from interpflow.planning import schema_error_lines

ROOT = Path(workflow.basedir)
LIB = ROOT / "src" / "interpflow"
# Jobs import the library from this checkout, in any env (conda, SLURM), installed or not.
os.environ.update(
    PYTHONPATH=os.pathsep.join([str(LIB.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
)


# (path, text, mapping) of every config file, the Snakefile's first, then the command line's
_CONFIG_FILES = layered_config_files(workflow.configfiles, workflow.overwrite_configfiles or [])


def _cli_configs():
    """The config files given on the command line (`--configfile`): a preset means exactly
    the instances it declares; without one, every instance of config/config.yaml is built.
    Two that declare one instance stop here, unless the later is an overlay."""
    files = _CONFIG_FILES[len(_CONFIG_FILES) - len(workflow.overwrite_configfiles or []) :]
    check_layering(files=files)
    return [cfg for _, _, cfg in files] if files else None


def _validate():
    """Every schema error at once, one line each (file: dotted.key: message), then
    snakemake's validate() for the top level's defaults."""
    errors = schema_error_lines(
        config=config,
        schema_file=Path(workflow.current_basedir) / ".." / "schemas" / "config.schema.yaml",
        sources=[(path, cfg) for path, _, cfg in _CONFIG_FILES],
    )
    if errors:  # these lines and nothing else (no traceback, no schema dump)
        logger.error("\n".join(errors))
        raise SystemExit(1)
    validate(config, schema="../schemas/config.schema.yaml")


_cli = _cli_configs()
INSTANCES = resolve_instances(config, declared_instances(_cli) if _cli is not None else None)
_validate()
# each instance gets its study schema's defaults: workflow/schemas/<study>.schema.yaml
fill_instance_defaults(INSTANCES, Path(workflow.current_basedir) / ".." / "schemas")
MODELS = config["models"]


wildcard_constraints:
    instance=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",


def code_hash(script):
    """Hash of scripts/<script>.py and every interpflow module it imports (at any depth):
    a param, so a job reruns when any code it runs changes (derived, never listed by hand)."""
    return _code_hash(ROOT / "scripts" / f"{script}.py", LIB)


def existing_file(path, key):
    """``path``, read from config key ``key``; a missing file fails at planning, naming the key."""
    if not Path(path).is_file():
        raise ConfigError(f"config key {key}: file {path} does not exist")
    return path


def instance_name(study, wildcards):
    """The instance a job's wildcards name; one the config does not declare fails here."""
    name = wildcards.instance
    if name not in INSTANCES[study]:
        declared = ", ".join(sorted(INSTANCES[study])) or "none"
        raise ConfigError(f"no {study} instance {name!r} in the config (declared: {declared})")
    return name


def instance(study, wildcards):
    """The (validated, defaults filled) config of the instance a job's wildcards name."""
    return INSTANCES[study][instance_name(study, wildcards)]


def setting(study, *keys):
    """A params/input function: ``instance(study)[keys[0]][keys[1]]...``."""

    def get(wildcards):
        value = instance(study, wildcards)
        for key in keys:
            value = value[key]
        return value

    return get
