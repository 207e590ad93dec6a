# Seed 002, the tribunal study: chain-of-thought correctness probes across layers.
# problems -> attempts -> traces + activations (stops at the targets) -> labels -> probes.

TRIBUNAL = "results/tribunal"


rule tribunal_prompts:
    input:
        tribunal_problems_input,
    output:
        problems=f"{TRIBUNAL}/problems.parquet",
        prompts=f"{TRIBUNAL}/prompts.parquet",
        provenance=f"{TRIBUNAL}/prompts.parquet.provenance.json",
    log:
        "logs/tribunal/prompts.log",
    params:
        problems=config["tribunal"]["problems"],
        instruction=config["tribunal"]["prompt"]["instruction"],
        samples_per_problem=config["tribunal"]["generation"]["samples_per_problem"],
        max_attempts=config["tribunal"]["stopping"]["max_attempts"],
        seed=config["tribunal"]["generation"]["seed"],
        code=code_hash("tribunal"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tribunal_prompts.py"


rule generate_tribunal:
    input:
        prompts=f"{TRIBUNAL}/prompts.parquet",
        model=model_input,
    output:
        generations=f"{TRIBUNAL}/generations.parquet",
        activations=f"{TRIBUNAL}/activations.parquet",
        provenance=f"{TRIBUNAL}/activations.parquet.provenance.json",
    log:
        "logs/tribunal/generate.log",
    benchmark:
        "benchmarks/results/generate_tribunal.tsv"
    params:
        model=model_spec(),
        model_id=config["model"]["name"],
        generation=config["tribunal"]["generation"],
        system_prompt=config["tribunal"]["prompt"]["system_prompt"],
        capture=config["tribunal"]["capture"],
        stopping=config["tribunal"]["stopping"],
        labels=config["tribunal"]["labels"],
        code=code_hash("tribunal", "generate", "models", "positions"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/tribunal_generate.py"


rule label_tribunal:
    input:
        generations=f"{TRIBUNAL}/generations.parquet",
        prompts=f"{TRIBUNAL}/prompts.parquet",
    output:
        labels=f"{TRIBUNAL}/labels.parquet",
        summary=f"{TRIBUNAL}/labels.summary.json",
    log:
        "logs/tribunal/labels.log",
    params:
        labels=config["tribunal"]["labels"],
        code=code_hash("tribunal"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tribunal_labels.py"


rule probes_tribunal:
    input:
        activations=f"{TRIBUNAL}/activations.parquet",
        labels=f"{TRIBUNAL}/labels.parquet",
    output:
        metrics=f"{TRIBUNAL}/metrics.json",
        png=report(
            f"{TRIBUNAL}/probe_results.png",
            caption="../report/tribunal_probe_results.rst",
            category="Tribunal",
        ),
        table=f"{TRIBUNAL}/probe_results.csv",
        logits=f"{TRIBUNAL}/probe_logits.parquet",
        directions=f"{TRIBUNAL}/implicit_value_directions.safetensors",
        directions_json=f"{TRIBUNAL}/implicit_value_directions.json",
    log:
        "logs/tribunal/probes.log",
    benchmark:
        "benchmarks/results/probes_tribunal.tsv"
    params:
        layers=config["tribunal"]["capture"]["layers"],
        aggregations=config["tribunal"]["capture"]["aggregations"],
        probes=config["tribunal"]["probes"],
        model_id=config["model"]["name"],
        code=code_hash("tribunal", "probes"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/tribunal_probes.py"
