# The checks that stop a plan before any job runs, beside those of config validation: the
# layers a config names exist in its model, an adapter family trains in 4 bit, every GPU rule
# fits its GPUs (the memory table). The models' shapes and depths come from their config.json
# where planning can read it (model_sources.smk says where each model loads from).

import json

from interpflow.kbit import check_family
from interpflow.memory import shape_from_config
from interpflow.memory_plan import atlas_jobs, check_fit, format_table, instance_jobs, plan_rows
from interpflow.planning import check_layers


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
