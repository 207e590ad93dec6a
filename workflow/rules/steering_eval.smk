# Weight steering, eval stages: the alpha-sweep of dW with its subspace diagnostics (rule
# steering_eval, one job per family) and the RepE / prompt baselines (rule steering_baselines).
# The study's glue is in steering.smk.

rule steering_eval:
    input:
        dw=f"{STEERING}/dw/{{family}}.safetensors",
        personas=steering_personas,
        questions=setting("steering", "questions"),
        eval_sets=steering_eval_files,
        model=model_input("steering"),
    output:
        evals=f"{STEERING}/evals/weight_{{family}}.parquet",
        overlap=f"{STEERING}/diagnostics/{{family}}_overlap.parquet",
        projection=f"{STEERING}/diagnostics/{{family}}_projection.parquet",
    log:
        "logs/steering/{instance}/eval/{family}.log",
    benchmark:
        "benchmarks/results/steering/{instance}/eval/{family}.tsv"
    params:
        model=model_spec("steering"),
        eval_sets=steering_eval_sets,
        eval=steering_eval_params,
        diagnostics=setting("steering", "diagnostics"),
        key=steering_key,
        code=code_hash("steering/eval"),
    threads: model_threads("steering")
    resources:
        gpu=model_gpus("steering"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering/eval.py"


rule steering_baselines:
    input:
        personas=steering_personas,
        questions=setting("steering", "questions"),
        prompts=setting("steering", "baselines", "prompts"),
        engineered=steering_engineered,
        eval_sets=steering_eval_files,
        model=model_input("steering"),
    output:
        directions=f"{STEERING}/repe/directions.safetensors",
        norms=f"{STEERING}/repe/directions.json",
        repe=f"{STEERING}/evals/repe.parquet",
        prompts=f"{STEERING}/evals/prompts.parquet",
    log:
        "logs/steering/{instance}/baselines.log",
    benchmark:
        "benchmarks/results/steering/{instance}/baselines.tsv"
    params:
        model=model_spec("steering"),
        eval_sets=steering_eval_sets,
        eval=steering_eval_params,
        n_questions=setting("steering", "baselines", "repe_n_questions"),
        repe_form=setting("steering", "baselines", "repe_form"),
        repe_pairs=setting("steering", "baselines", "repe_pairs"),
        key=steering_key,
        code=code_hash("steering/baselines"),
    threads: model_threads("steering")
    resources:
        gpu=model_gpus("steering"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering/baselines.py"
