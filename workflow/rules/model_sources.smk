# Where each declared model (config key models.<name>) is loaded from: the directory a rule
# of models.smk builds (the stub, a packaged model, a random-init control, a stand-in), a hub
# id, or a local directory; and the params functions that hand a job its instance's model
# (model_input, model_spec, model_id, model_threads, model_gpus). Every model resolves at
# planning (check_instances, at the end). Standard library and light interpflow modules only.

from interpflow.config import STUDIES
from interpflow.hubdata import hub_source_message
from interpflow.models import check_model_path, is_local_path
from interpflow.packaged import PACKAGED, packaged_gguf
from interpflow.planning import hub_cache_message

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
