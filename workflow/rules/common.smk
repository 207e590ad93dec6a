# Glue shared by every study: instances, validation, model and judge helpers, the code hash.
# Every SLURM job re-parses this file: standard library, yaml and snakemake only here (the
# interpflow modules imported below import nothing heavier), no big file reads.

import json
import os
from pathlib import Path

import yaml
from snakemake.logging import logger
from snakemake.utils import validate

from interpflow.codehash import code_hash as _code_hash
from interpflow.config import (
    STUDIES,
    ConfigError,
    check_layering,
    declared_instances,
    fill_defaults,
    resolve_instances,
)
from interpflow.hubdata import hub_source_message
from interpflow.judges import JudgeConfig, require_api_key
from interpflow.kbit import check_family
from interpflow.memory import shape_from_config
from interpflow.memory_plan import atlas_jobs, check_fit, format_table, instance_jobs, plan_rows
from interpflow.models import check_model_path, is_local_path
from interpflow.packaged import PACKAGED, packaged_gguf
from interpflow.planning import check_layers, hub_cache_message, schema_error_lines


ROOT = Path(workflow.basedir)
LIB = ROOT / "src" / "interpflow"
# Jobs import the library from this checkout, in any env (conda, SLURM), installed or not.
os.environ.update(
    PYTHONPATH=os.pathsep.join([str(LIB.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
)


def _config_files():
    """(path, text, mapping) of every config file in the order they are layered: the
    Snakefile's configfile, then the command line's (`--configfile`)."""
    cli = [str(f) for f in workflow.overwrite_configfiles or []]
    files = [str(f) for f in workflow.configfiles if str(f) not in cli] + cli
    return [
        (os.path.relpath(f) if Path(f).resolve().is_relative_to(Path.cwd()) else f, text, cfg)
        for f in files
        for text in [Path(f).read_text()]
        for cfg in [yaml.safe_load(text) or {}]
    ]


_CONFIG_FILES = _config_files()


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


def _fill_instance_defaults():
    """Each instance gets its study schema's defaults (validate() does not reach through the
    instance maps' $refs): workflow/schemas/<study>.schema.yaml is the one place they live."""
    schemas = Path(workflow.current_basedir) / ".." / "schemas"
    defs = yaml.safe_load((schemas / "config.schema.yaml").read_text())["$defs"]
    for study in STUDIES:
        schema = yaml.safe_load((schemas / f"{study}.schema.yaml").read_text())
        for inst in INSTANCES[study].values():
            fill_defaults(inst, schema, defs)


_cli = _cli_configs()
INSTANCES = resolve_instances(config, declared_instances(_cli) if _cli is not None else None)
_validate()
_fill_instance_defaults()
MODELS = config["models"]
# model source -> the directory that a rule builds (the stub, the models installed from PyPI)
BUILT_MODELS = {"stub": "results/models/stub"} | {s: f"results/models/{s}" for s in PACKAGED}
# model name -> the directory that models_random_init builds, for each model declared with
# init = random (the random-init controls, interpflow.random_init)
# model name -> the directory that models_standin builds, for each model declared with a
# standin (a rehearsal's small random model of the real one's family and depth; interpflow.standin)
STANDINS = {
    name: f"results/models/{name}" for name, decl in MODELS.items() if decl["standin"] is not None
}
RANDOM_INIT = {
    name: f"results/models/{name}"
    for name, decl in MODELS.items()
    if decl["init"] == "random" and name not in STANDINS
}
# every directory a rule builds
BUILT_DIRS = {*BUILT_MODELS.values(), *RANDOM_INIT.values(), *STANDINS.values()}


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


def _model(study, name):
    """(model name, its declaration) of instance ``name``; unknown names fail at planning."""
    model = INSTANCES[study][name]["model"]["name"]
    if model not in MODELS:
        raise ConfigError(
            f"config key {study}.{name}.model.name: model {model!r} is not declared under "
            f"models (declared: {', '.join(sorted(MODELS))})"
        )
    return model, MODELS[model]


def source_path(model):
    """Where the source of declared model ``model`` is: the directory a rule builds (stub,
    smollm2), a hub id, or a local directory (a missing one fails, naming the key)."""
    source = MODELS[model]["source"]
    if source in BUILT_MODELS:
        return BUILT_MODELS[source]
    check_model_path(source, f"models.{model}.source")
    if not is_local_path(source):
        check_hub_cache(model)
    return source


def check_hub_cache(model):
    """With HF_HUB_OFFLINE set, hub model ``model`` must be in the local cache: a real run
    stops at planning, naming models.<name>.source and how to fetch it; a dry run warns.
    Main process only: a job's re-parse was planned already."""
    if not workflow.is_main_process:
        return
    message = hub_cache_message(
        repo_id=MODELS[model]["source"],
        revision=MODELS[model]["revision"],
        key=f"models.{model}.source",
    )
    if message and not workflow.output_settings.dryrun:
        raise ConfigError(message)
    if message and model not in _HUB_WARNED:
        _HUB_WARNED.add(model)
        logger.warning(f"{message} (a dry run plans anyway; a real run stops here)")


_HUB_WARNED = set()


def model_path(study, name):
    """The directory a rule builds (the stub, a packaged or a random-init model), a hub id, or
    a local directory."""
    model, _ = _model(study, name)
    return declared_model_path(model)


def declared_model_path(model):
    """Where declared model ``model`` is loaded from: its stand-in or random-init directory
    (built by models_standin / models_random_init), else its source (source_path)."""
    if model in STANDINS:
        return STANDINS[model]
    path = source_path(model)  # checked for random-init models too: their rule reads it
    return RANDOM_INIT.get(model, path)


def model_input(study):
    """An input function: the model directory when a rule builds it, else nothing."""

    def get(wildcards):
        path = model_path(study, instance_name(study, wildcards))
        return [path] if path in BUILT_DIRS else []

    return get


def random_init_input(model):
    """Input of models_random_init for ``model``, its source when a rule builds that."""
    path = source_path(model)
    return [path] if path in BUILT_DIRS else []


def random_init_params(model):
    """Keyword arguments of interpflow.random_init.build_random_init for ``model``."""
    decl = MODELS[model]
    return dict(
        source=source_path(model),
        seed=decl["init_seed"],
        revision=decl["revision"],
        trust_remote_code=decl["trust_remote_code"],
    )


def model_spec_of(study, name):
    """Keyword arguments of interpflow.models.ModelSpec for instance ``name`` of ``study``."""
    runs = INSTANCES[study][name]["model"]
    _, decl = _model(study, name)
    return dict(
        name_or_path=model_path(study, name),
        revision=decl["revision"],
        dtype=runs["dtype"],
        device=runs["device"],
        trust_remote_code=decl["trust_remote_code"],
        chat_template={**decl["chat_template"], **runs["chat_template"]},
        gpus=runs["gpus"],
    )


def model_spec(study):
    """A params function: the ModelSpec keyword arguments of the job's instance."""
    return lambda wildcards: model_spec_of(study, instance_name(study, wildcards))


def model_label(model):
    """How outputs name declared model ``model``: its name, "(stand-in)" after it when a
    stand-in replaces it (a rehearsal)."""
    return f"{model} (stand-in)" if model in STANDINS else model


def model_id(study):
    """A params function: the model's declared name (recorded in provenance), marked when a
    stand-in runs in its place."""
    return lambda wildcards: model_label(instance(study, wildcards)["model"]["name"])


def standin_params(model):
    """Keyword arguments of interpflow.standin.build_standin for declared model ``model``."""
    decl = MODELS[model]
    if decl["shape"] is None:
        raise ConfigError(
            f"config key models.{model}.shape: a stand-in needs the model's shape "
            f"(model_type and num_hidden_layers, as its config.json states them)"
        )
    return dict(
        model_type=decl["shape"]["model_type"],
        num_layers=decl["shape"]["num_hidden_layers"],
        template=decl["standin"],
        stands_for=decl["source"],
    )


def model_threads(study):
    """A threads function: the instance's model.threads."""
    return lambda wildcards: instance(study, wildcards)["model"]["threads"]


def model_gpus(study):
    """A resources function (``gpu=``): the instance's model.gpus, so a job asks the profile
    for the GPUs its model is loaded over (the slurm plugin's --gpus)."""
    return lambda wildcards: instance(study, wildcards)["model"]["gpus"]


def check_kbit_families(study, block, families):
    """Planning stops where an instance of ``study`` trains (its ``block``) in 4 bit an
    adapter family PEFT cannot train there (interpflow.kbit); ``families(inst)`` gives
    (families, their config key)."""
    for name, inst in INSTANCES[study].items():
        fams, fam_key = families(inst)
        check_family(
            families=fams,
            quantization=inst[block]["quantization"],
            key=f"{study}.{name}.{block}.quantization",
            family_key=f"{study}.{name}.{fam_key}",
        )


def judge(name, key):
    """Keyword arguments of interpflow.judges.JudgeConfig for the judge `name` (`name` too,
    for error messages).

    Fails at DAG planning (not hours into a GPU job) when the judge is unknown, or its local
    model directory (hf) does not exist. A missing API key fails a real run at planning too,
    before any GPU job; a dry run (`snakemake -n`, e.g. on a login node) only warns, naming
    the variable. The key itself never enters params or logs.
    """
    if name not in config["judges"]:
        raise ConfigError(
            f"config key {key}: judge {name!r} is not defined under 'judges' "
            f"(defined: {', '.join(sorted(config['judges']))})"
        )
    cfg = JudgeConfig(**config["judges"][name])
    try:
        require_api_key(cfg)
    except ValueError as e:
        if not workflow.output_settings.dryrun:
            raise
        logger.warning(f"config key {key}: {e} (a dry run plans anyway; a real run stops here)")
    if cfg.backend == "hf" and cfg.model not in BUILT_DIRS:  # may not be built yet
        check_model_path(cfg.model, f"judges.{name}.model")
    return dict(config["judges"][name], name=name)


def check_instances():
    """Every instance's model resolves (unknown names, missing local directories fail here);
    no random-init model takes the directory of a source a rule builds."""
    for model in STANDINS:
        standin_params(model)
    for model in RANDOM_INIT:
        if model in BUILT_MODELS:
            raise ConfigError(
                f"config key models.{model}: a random-init model (init: random) needs a name of "
                f"its own; {model!r} is a built source ({', '.join(BUILT_MODELS)}) and "
                f"results/models/{model} is its directory"
            )
    for study in STUDIES:
        for name in INSTANCES[study]:
            model_path(study, name)


check_instances()


def model_shape(model):
    """interpflow.memory.Shape of declared model ``model``: the config.json of the directory it
    loads from (or of its source), else its stated models.<name>.shape (the stub: the stub
    block); None when neither is there (the memory table says unknown)."""
    decl = MODELS[model]
    paths = [declared_model_path(model)] + ([] if model in STANDINS else [source_path(model)])
    for path in paths:
        if (Path(path) / "config.json").is_file():
            return shape_from_config(config=json.loads((Path(path) / "config.json").read_text()))
    if model in STANDINS:
        return None  # the stand-in's size is known once models_standin has built it
    if decl["source"] == "stub":
        stub = config["stub"]
        return shape_from_config(
            config=dict(
                model_type="qwen2",
                num_hidden_layers=stub["num_layers"],
                hidden_size=stub["hidden_size"],
                intermediate_size=stub["intermediate_size"],
                num_attention_heads=stub["num_heads"],
                num_key_value_heads=stub["num_kv_heads"],
                vocab_size=stub["vocab_size"],
                tie_word_embeddings=True,
            )
        )
    return shape_from_config(config=decl["shape"]) if decl["shape"] else None


def model_depth(model):
    """(decoder layers, where planning read them) of declared model ``model``: the stub block
    (stub), models.<name>.shape (a stand-in is built to it), the config.json of the directory
    it loads from; None when planning cannot know (e.g. a hub model with no stated shape)."""
    decl = MODELS[model]
    if decl["shape"] is not None and model in STANDINS:
        return decl["shape"]["num_hidden_layers"], f"models.{model}.shape.num_hidden_layers"
    if decl["source"] == "stub":
        return config["stub"]["num_layers"], "stub.num_layers"
    for path in dict.fromkeys([declared_model_path(model), source_path(model)]):
        file = Path(path) / "config.json"
        if file.is_file():
            layers = json.loads(file.read_text()).get("num_hidden_layers")
            return (layers, f"{file} num_hidden_layers") if layers else None
    if decl["shape"] is not None:
        return decl["shape"]["num_hidden_layers"], f"models.{model}.shape.num_hidden_layers"
    return None


def check_instance_layers(study, name, key, layers):
    """The layers of config key <study>.<name>.<key> exist in the instance's model (planning
    stops naming the key and the depth where that is known)."""
    model = INSTANCES[study][name]["model"]["name"]
    depth, where = model_depth(model) or (None, "")
    check_layers(
        key=f"{study}.{name}.{key}",
        layers=layers,
        depth=depth,
        depth_from=f"model {model!r}: {where}",
    )


def check_gpu_memory(atlas_models):
    """Print the GPU memory table of the plan's GPU rules (interpflow.memory_plan) and stop the
    plan when one does not fit its model.gpus x gpu.memory_gb. Main process only: a job's
    re-parse was planned already."""
    if not workflow.is_main_process:
        return
    gpu = config["gpu"]
    jobs = [
        job
        for study in STUDIES
        for name, inst in INSTANCES[study].items()
        for job in instance_jobs(
            study=study, name=name, inst=inst, prompt_tokens=gpu["prompt_tokens"]
        )
    ]
    jobs += atlas_jobs(
        models=atlas_models, steering=INSTANCES["steering"], prompt_tokens=gpu["prompt_tokens"]
    )
    if not jobs:
        return
    shapes = {job.model: model_shape(job.model) for job in jobs}
    rows = plan_rows(jobs=jobs, shapes=shapes, memory_gb=gpu["memory_gb"])
    logger.info(format_table(rows=rows, memory_gb=gpu["memory_gb"]))
    check_fit(rows=rows, memory_gb=gpu["memory_gb"])


JUDGE_CACHE = "results/cache/judges.sqlite"
EMBED_CACHE = "results/cache/embeddings.sqlite"
