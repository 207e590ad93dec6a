rule generate_deception:
    input:
        prompts="results/prompts/deception.parquet",
        model=model_input,
    output:
        generations="results/generations/deception.parquet",
        activations="results/activations/deception.parquet",
        provenance="results/activations/deception.parquet.provenance.json",
    log:
        "logs/generate/deception.log",
    benchmark:
        "benchmarks/results/generate_deception.tsv"
    params:
        model=model_spec(),
        model_id=config["model"]["name"],
        generation=config["deception"]["generation"],
        capture=config["deception"]["capture"],
        code=code_hash("generate", "models", "positions"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/generate.py"
