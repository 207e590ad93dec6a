# Inoculation, heuristics stages: each prompt's log-probabilities (rule inoculation_logprobs),
# the text embeddings of the prompts (inoculation_text_embeddings) and the heuristics that
# predict suppression from them (inoculation_heuristics). Plan and targets: inoculation.smk.

# The text-embedding table, when the instance's embeddings.embedder names a backend.
inoc_text_embeddings_input = lambda wildcards: (
    {
        "text_embeddings": f"{INOC_OUT}/text_embeddings.parquet".format(
            instance=wildcards.instance
        )
    }
    if instance("inoculation", wildcards)["embeddings"]["embedder"]
    else {}
)


rule inoculation_logprobs:
    input:
        train=f"{INOC_OUT}/data/train.parquet",
        neutral=f"{INOC_OUT}/data/neutral.parquet",
        traits=inoc_each(f"{INOC_OUT}/data/{{item}}.parquet", "trait_datasets"),
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
        model=model_input("inoculation"),
    output:
        train=f"{INOC_OUT}/logprobs/train.parquet",
        train_tokens=f"{INOC_OUT}/logprobs/train.tokens.parquet",
        neutral=f"{INOC_OUT}/logprobs/neutral.parquet",
        neutral_tokens=f"{INOC_OUT}/logprobs/neutral.tokens.parquet",
        traits=f"{INOC_OUT}/logprobs/traits.parquet",
        traits_tokens=f"{INOC_OUT}/logprobs/traits.tokens.parquet",
        selfperp=f"{INOC_OUT}/logprobs/selfperp.parquet",
    log:
        f"{INOC_LOG}/logprobs.log",
    benchmark:
        f"{INOC_BENCH}/logprobs.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        trait_datasets=inoc("trait_datasets"),
        prompts=inoc("prompts"),
        default_system=setting("inoculation", "default_system"),
        batch_size=setting("inoculation", "logprobs", "batch_size"),
        subsample=setting("inoculation", "logprobs", "subsample"),
        subsample_seed=setting("inoculation", "logprobs", "subsample_seed"),
        model=model_spec("inoculation"),
        model_id=model_id("inoculation"),
        code=code_hash("inoculation/logprobs"),
    script:
        "../../scripts/inoculation/logprobs.py"


rule inoculation_text_embeddings:
    input:
        rephrasings=f"{INOC_OUT}/rephrasings.parquet",
    output:
        table=f"{INOC_OUT}/text_embeddings.parquet",
        summary=f"{INOC_OUT}/text_embeddings.parquet.summary.json",
    log:
        f"{INOC_LOG}/text_embeddings.log",
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("prompts"),
        embeddings=setting("inoculation", "embeddings"),
        embedder=inoc("judges", "embedder"),
        cache=EMBED_CACHE,
        code=code_hash("inoculation/text_embeddings"),
    script:
        "../../scripts/inoculation/text_embeddings.py"


rule inoculation_heuristics:
    input:
        unpack(inoc_text_embeddings_input),
        train=f"{INOC_OUT}/logprobs/train.parquet",
        train_tokens=f"{INOC_OUT}/logprobs/train.tokens.parquet",
        neutral=f"{INOC_OUT}/logprobs/neutral.parquet",
        traits=f"{INOC_OUT}/logprobs/traits.parquet",
        selfperp=f"{INOC_OUT}/logprobs/selfperp.parquet",
    output:
        table=f"{INOC_OUT}/heuristics/heuristics.parquet",
        embeddings=f"{INOC_OUT}/heuristics/embeddings.parquet",
        angles=f"{INOC_OUT}/heuristics/angles.parquet",
        angle_summary=f"{INOC_OUT}/heuristics/angle_summary.parquet",
        matrices=f"{INOC_OUT}/heuristics/W.safetensors",
        meta=f"{INOC_OUT}/heuristics/W.json",
    log:
        f"{INOC_LOG}/heuristics.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        traits=lambda wildcards: list(inoc("traits")(wildcards)),
        prompts=inoc("prompts"),
        heuristics=setting("inoculation", "heuristics"),
        code=code_hash("inoculation/heuristics"),
    script:
        "../../scripts/inoculation/heuristics.py"
