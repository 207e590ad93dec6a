# Inoculation prompting (seed 003): data -> rephrasings -> logprobs -> heuristics,
# and SFT sets -> adapters (shared trainer) -> evals -> judged scores -> figures.

INOC_OUT = "results/inoculation"


wildcard_constraints:
    dataset="train|neutral|trait_[A-Za-z0-9_]+",
    run="none|[A-Za-z0-9_]+-(fixed|mix|system)",


rule inoculation_data:
    input:
        inoc_data_input,
    output:
        f"{INOC_OUT}/data/{{dataset}}.parquet",
    log:
        "logs/inoculation/data_{dataset}.log",
    benchmark:
        "benchmarks/inoculation/data_{dataset}.tsv"
    params:
        spec=inoc_data_params,
        instructions=INOC["data"]["train_instructions"],
        datagen=INOC["datagen"],
        model=model_spec(),
        code=code_hash("inoculation", "generate", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/inoculation_data.py"


rule inoculation_rephrasings:
    input:
        INOC["prompts_file"],
    output:
        f"{INOC_OUT}/rephrasings.parquet",
    log:
        "logs/inoculation/rephrasings.log",
    params:
        prompts=INOC_PROMPTS,
        n=INOC["rephrasings"]["n"],
        judge=INOC_JUDGES["rephrase"],
        cache=JUDGE_CACHE,
        code=code_hash("inoculation", "judges"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/inoculation_rephrasings.py"


rule inoculation_logprobs:
    input:
        data=expand(f"{INOC_OUT}/data/{{dataset}}.parquet", dataset=INOC_DATASETS),
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
        model=model_input,
    output:
        examples=expand(f"{INOC_OUT}/logprobs/{{dataset}}.parquet", dataset=INOC_DATASETS),
        tokens=expand(f"{INOC_OUT}/logprobs/{{dataset}}.tokens.parquet", dataset=INOC_DATASETS),
        selfperp=f"{INOC_OUT}/logprobs/selfperp.parquet",
    log:
        "logs/inoculation/logprobs.log",
    benchmark:
        "benchmarks/inoculation/logprobs.tsv"
    params:
        datasets=INOC_DATASETS,
        prompts=INOC_PROMPTS,
        default_system=INOC["default_system"],
        batch_size=INOC["logprobs"]["batch_size"],
        model=model_spec(),
        model_id=config["model"]["name"],
        code=code_hash("inoculation", "logprobs", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/inoculation_logprobs.py"


rule inoculation_text_embeddings:
    input:
        prompts=INOC["prompts_file"],
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
    output:
        f"{INOC_OUT}/text_embeddings.parquet",
    log:
        "logs/inoculation/text_embeddings.log",
    params:
        prompts=INOC_PROMPTS,
        embeddings=INOC["embeddings"],
        embedder=INOC_JUDGES["embedder"],
        cache=EMBED_CACHE,
        code=code_hash("inoculation", "embeddings"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/inoculation_text_embeddings.py"


rule inoculation_heuristics:
    input:
        unpack(inoc_text_embeddings_input),
        logprobs=expand(f"{INOC_OUT}/logprobs/{{dataset}}.parquet", dataset=INOC_DATASETS),
        tokens=f"{INOC_OUT}/logprobs/train.tokens.parquet",
        selfperp=f"{INOC_OUT}/logprobs/selfperp.parquet",
    output:
        table=f"{INOC_OUT}/heuristics/heuristics.parquet",
        embeddings=f"{INOC_OUT}/heuristics/embeddings.parquet",
        angles=f"{INOC_OUT}/heuristics/angles.parquet",
        angle_summary=f"{INOC_OUT}/heuristics/angle_summary.parquet",
        matrices=f"{INOC_OUT}/heuristics/W.safetensors",
        meta=f"{INOC_OUT}/heuristics/W.json",
    log:
        "logs/inoculation/heuristics.log",
    params:
        traits=list(INOC_TRAITS),
        prompts=INOC_PROMPTS,
        heuristics=INOC["heuristics"],
        code=code_hash("inoculation", "heuristics"),
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/inoculation_heuristics.py"


rule inoculation_sft:
    input:
        data=f"{INOC_OUT}/data/train.parquet",
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
    output:
        f"{INOC_OUT}/sft/{{run}}.parquet",
    log:
        "logs/inoculation/sft_{run}.log",
    params:
        prompts=INOC_PROMPTS,
        default_system=INOC["default_system"],
        seed=INOC["training"]["seed"],
        code=code_hash("inoculation"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/inoculation_sft.py"


rule inoculation_train:
    input:
        data=f"{INOC_OUT}/sft/{{run}}.parquet",
        model=model_input,
    output:
        directory(f"{INOC_OUT}/adapters/{{run}}"),
    log:
        "logs/inoculation/train_{run}.log",
    benchmark:
        "benchmarks/inoculation/train_{run}.tsv"
    params:
        model=model_spec(),
        training=INOC["training"],
        code=code_hash("adapters", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/inoculation_train.py"


rule inoculation_eval:
    input:
        adapter=f"{INOC_OUT}/adapters/{{run}}",
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
        sets=lambda wc: list(inoc_eval_sets().values()),
        model=model_input,
    output:
        f"{INOC_OUT}/evals/{{run}}.parquet",
    log:
        "logs/inoculation/eval_{run}.log",
    benchmark:
        "benchmarks/inoculation/eval_{run}.tsv"
    params:
        sets=lambda wc: inoc_eval_sets(),
        n={"trait": INOC["data"]["n_eval"], "em": INOC["data"]["n_em"]},
        prompts=INOC_PROMPTS,
        default_system=INOC["default_system"],
        eval=INOC["eval"],
        model=model_spec(),
        code=code_hash("inoculation", "generate", "models"),
    threads: config["model"]["threads"]
    resources:
        gpu=1,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/inoculation_eval.py"


rule inoculation_scores:
    input:
        expand(f"{INOC_OUT}/evals/{{run}}.parquet", run=INOC_RUNS),
    output:
        scores=f"{INOC_OUT}/scores/scores.parquet",
        summary=f"{INOC_OUT}/scores/summary.parquet",
        em=f"{INOC_OUT}/scores/em_rates.parquet",
        suppression=f"{INOC_OUT}/scores/suppression.parquet",
    log:
        "logs/inoculation/scores.log",
    benchmark:
        "benchmarks/inoculation/scores.tsv"
    params:
        traits=INOC_TRAITS,
        trait_judge=INOC_JUDGES["trait"],
        em_judge=INOC_JUDGES["em"],
        min_mass=INOC["judges"]["min_mass"],
        cache=JUDGE_CACHE,
        code=code_hash("inoculation", "judges"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/inoculation_scores.py"


rule inoculation_report:
    input:
        summary=f"{INOC_OUT}/scores/summary.parquet",
        suppression=f"{INOC_OUT}/scores/suppression.parquet",
        em=f"{INOC_OUT}/scores/em_rates.parquet",
        heuristics=f"{INOC_OUT}/heuristics/heuristics.parquet",
        embeddings=f"{INOC_OUT}/heuristics/embeddings.parquet",
        angles=f"{INOC_OUT}/heuristics/angles.parquet",
        meta=f"{INOC_OUT}/heuristics/W.json",
    output:
        figures=expand(f"{INOC_OUT}/figures/{{f}}.png", f=INOC_FIGURES),
        correlations=f"{INOC_OUT}/figures/heuristic_correlations.csv",
    log:
        "logs/inoculation/report.log",
    params:
        code=code_hash("inoculation", "heuristics"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/inoculation_report.py"
