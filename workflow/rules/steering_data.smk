# Weight steering, data stage (rule steering_data): the base model answers the question pool
# under each persona. The study's glue (paths, input functions, targets) is in steering.smk.

rule steering_data:
    input:
        personas=steering_personas,
        questions=setting("steering", "questions"),
        model=model_input("steering"),
    output:
        pos=f"{STEERING}/data/pos.parquet",
        neg=f"{STEERING}/data/neg.parquet",
    log:
        "logs/steering/{instance}/data.log",
    benchmark:
        "benchmarks/results/steering/{instance}/data.tsv"
    params:
        model=model_spec("steering"),
        data=setting("steering", "data"),
        key=steering_key,
        code=code_hash("steering/data"),
    threads: model_threads("steering")
    resources:
        gpu=model_gpus("steering"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering/data.py"
