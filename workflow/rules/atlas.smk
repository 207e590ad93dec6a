# The direction atlas (issue 15, item 2): per model, the directions that the deception probe,
# the tribunal probe, RepE (mean difference, PCA) and the residual shift of alpha·dW find,
# compared per layer as signed cosines beside a null band of random directions
# (interpflow.atlas). Built for a model when instances of at least two of the studies
# deception, tribunal and steering run on it (a one-study preset never plans it).

ATLAS = "results/atlas/{model}"

# model name -> {study: [instance names on it]} for the studies whose directions the atlas reads
ATLAS_SOURCES = {
    model: {
        study: [n for n, inst in INSTANCES[study].items() if inst["model"]["name"] == model]
        for study in ("deception", "tribunal", "steering")
    }
    for model in MODELS
}
ATLAS_MODELS = [
    model for model, by in ATLAS_SOURCES.items() if sum(bool(names) for names in by.values()) >= 2
]

# The stage's plan for one model: each instance's files and config blocks (interpflow.atlas.collect).
atlas_plan = lambda model: {
    "deception": [
        {
            "instance": name,
            "activations": f"results/deception/{name}/activations.parquet",
            "labels": f"results/deception/{name}/labels.parquet",
            "train": f"results/deception/{name}/probes/train_indices.npy",
            "probes": INSTANCES["deception"][name]["probes"],
            "layers": INSTANCES["deception"][name]["capture"]["layers"],
            "positive": INSTANCES["deception"][name]["protocol"]["positive"],
            # the verbalizer's labels, read when the probes' target is verbalizer_label
            "nla": f"results/deception/{name}/labels_nla.parquet"
            if INSTANCES["deception"][name]["probes"]["target"] == "verbalizer_label"
            else None,
        }
        for name in ATLAS_SOURCES[model]["deception"]
    ],
    "tribunal": [
        {
            "instance": name,
            "directions": f"results/tribunal/{name}/implicit_value_directions.safetensors",
            "directions_json": f"results/tribunal/{name}/implicit_value_directions.json",
        }
        for name in ATLAS_SOURCES[model]["tribunal"]
    ],
    "steering": [
        {
            "instance": name,
            "repe": f"results/steering/{name}/repe/directions.safetensors",
            "dw": {f: f"results/steering/{name}/dw/{f}.safetensors" for f in inst["families"]},
            "model": model_spec_of("steering", name),
            "eval_sets": {k: v for k, v in inst["eval"]["sets"].items() if v},
            "eval": {
                "alphas": inst["alphas"],
                **{k: v for k, v in inst["eval"].items() if k != "sets"},
            },
            "threads": inst["model"]["threads"],
        }
        for name in ATLAS_SOURCES[model]["steering"]
        for inst in [INSTANCES["steering"][name]]
    ],
}

# Every file the plan names (the local eval sets too), and the steering model's directory when
# a rule builds it.
atlas_inputs = lambda wildcards: sorted(
    {
        path
        for study, entries in atlas_plan(wildcards.model).items()
        for entry in entries
        for key, value in entry.items()
        if key in ("activations", "labels", "train", "nla", "directions", "directions_json", "repe")
        for path in [value]
        if path
    }
    | {
        path
        for entry in atlas_plan(wildcards.model)["steering"]
        for path in [*entry["dw"].values(), *entry["eval_sets"].values()]
        if not path.startswith("hf:")
    }
    | {
        path
        for name in ATLAS_SOURCES[wildcards.model]["steering"]
        for path in [model_path("steering", name)]
        if path in BUILT_DIRS
    }
)

# Threads: the most that the model's steering instances run with (the dW shift's forward pass).
atlas_threads = lambda wildcards: max(
    [INSTANCES["steering"][n]["model"]["threads"] for n in ATLAS_SOURCES[wildcards.model]["steering"]]
    or [1]
)
# GPUs (resources: gpu): the most that the model's steering instances load it over (model.gpus).
atlas_gpus = lambda wildcards: max(
    [INSTANCES["steering"][n]["model"]["gpus"] for n in ATLAS_SOURCES[wildcards.model]["steering"]]
    or [1]
)

# The atlas of every model with at least two of the studies (rule all).
atlas_targets = lambda: expand(
    f"{ATLAS}/atlas.{{ext}}", model=ATLAS_MODELS, ext=["csv", "json", "png"]
)


rule atlas:
    input:
        atlas_inputs,
    output:
        csv=f"{ATLAS}/atlas.csv",
        json=f"{ATLAS}/atlas.json",
        png=report(
            f"{ATLAS}/atlas.png",
            caption="../report/atlas.rst",
            category="Atlas",
            subcategory="{model}",
        ),
    log:
        "logs/atlas/{model}.log",
    benchmark:
        "benchmarks/results/atlas/{model}/atlas.tsv"
    params:
        plan=lambda wildcards: atlas_plan(wildcards.model),
        code=code_hash("atlas"),
    threads: atlas_threads
    resources:
        gpu=atlas_gpus,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/atlas.py"
