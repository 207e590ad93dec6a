# Seed 004, weight steering: persona data -> theta+/theta- adapters per family -> dW ->
# alpha-sweep evals + subspace diagnostics; RepE and prompt baselines; report figures.
# Inputs, params and targets come from functions in common.smk (steering_*).


wildcard_constraints:
    family="lora|dora|pissa|delora|oft|ia3",


rule steering_data:
    input:
        personas=steering_personas_path(),
        questions=config["steering"]["questions"],
        model=model_input,
    output:
        pos="results/steering/data/pos.parquet",
        neg="results/steering/data/neg.parquet",
    log:
        "logs/steering/data.log",
    benchmark:
        "benchmarks/results/steering_data.tsv"
    params:
        model=model_spec(),
        data=config["steering"]["data"],
        code=code_hash("steering", "generate", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering_data.py"


rule steering_adapters:
    input:
        pos="results/steering/data/pos.parquet",
        neg="results/steering/data/neg.parquet",
        model=model_input,
    output:
        pos=directory("results/steering/adapters/{family}/pos"),
        neg=directory("results/steering/adapters/{family}/neg"),
        dw="results/steering/dw/{family}.safetensors",
        norms="results/steering/dw/{family}.norms.json",
    log:
        "logs/steering/adapters_{family}.log",
    benchmark:
        "benchmarks/results/steering_adapters_{family}.tsv"
    params:
        model=model_spec(),
        adapter=steering_adapter_config,
        train=config["steering"]["train"],
        code=code_hash("steering", "adapters", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering_adapters.py"


rule steering_eval:
    input:
        dw="results/steering/dw/{family}.safetensors",
        personas=steering_personas_path(),
        questions=config["steering"]["questions"],
        eval_sets=steering_eval_inputs(),
        model=model_input,
    output:
        evals="results/steering/evals/weight_{family}.parquet",
        overlap="results/steering/diagnostics/{family}_overlap.parquet",
        projection="results/steering/diagnostics/{family}_projection.parquet",
    log:
        "logs/steering/eval_{family}.log",
    benchmark:
        "benchmarks/results/steering_eval_{family}.tsv"
    params:
        model=model_spec(),
        eval_sets=steering_eval_sets(),
        eval=steering_eval_params(),
        k=config["steering"]["diagnostics"]["k"],
        n_questions=config["steering"]["diagnostics"]["n_questions"],
        code=code_hash("steering", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering_eval.py"


rule steering_baselines:
    input:
        personas=steering_personas_path(),
        questions=config["steering"]["questions"],
        prompts=config["steering"]["baselines"]["prompts"],
        eval_sets=steering_eval_inputs(),
        model=model_input,
    output:
        directions="results/steering/repe/directions.safetensors",
        repe="results/steering/evals/repe.parquet",
        prompts="results/steering/evals/prompts.parquet",
    log:
        "logs/steering/baselines.log",
    benchmark:
        "benchmarks/results/steering_baselines.tsv"
    params:
        model=model_spec(),
        eval_sets=steering_eval_sets(),
        eval=steering_eval_params(),
        n_questions=config["steering"]["baselines"]["repe_n_questions"],
        code=code_hash("steering", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/steering_baselines.py"


rule steering_report:
    input:
        evals=steering_report_evals(),
        overlaps=steering_report_overlaps(),
    output:
        summary="results/steering/report/summary.parquet",
        json="results/steering/report/summary.json",
        alpha=report(
            "results/steering/report/alpha_vs_score.png",
            caption="../report/steering_alpha.rst",
            category="Weight steering",
        ),
        bars=report(
            "results/steering/report/baselines_vs_weight.png",
            caption="../report/steering_baselines.rst",
            category="Weight steering",
        ),
        pmass=report(
            "results/steering/report/pmass.png",
            caption="../report/steering_pmass.rst",
            category="Weight steering",
        ),
        diagnostics="results/steering/report/diagnostics.csv",
    log:
        "logs/steering/report.log",
    params:
        code=code_hash("steering"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/steering_report.py"
