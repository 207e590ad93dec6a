# Inoculation, training stages: the SFT table of each run (rule inoculation_sft) and its
# adapter (inoculation_train, the shared trainer). Plan and targets: inoculation.smk.


rule inoculation_sft:
    input:
        unpack(inoc_rephrasings_input),
        data=f"{INOC_OUT}/data/train.parquet",
    output:
        f"{INOC_OUT}/sft/{{run}}.parquet",
    log:
        f"{INOC_LOG}/sft/{{run}}.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        prompts=inoc("prompts"),
        default_system=setting("inoculation", "default_system"),
        seed=setting("inoculation", "training", "seed"),
        code=code_hash("inoculation/sft"),
    script:
        "../../scripts/inoculation/sft.py"


rule inoculation_train:
    input:
        data=f"{INOC_OUT}/sft/{{run}}.parquet",
        model=model_input("inoculation"),
    output:
        directory(f"{INOC_OUT}/adapters/{{run}}"),
    log:
        f"{INOC_LOG}/train/{{run}}.log",
    benchmark:
        f"{INOC_BENCH}/train/{{run}}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        model=model_spec("inoculation"),
        training=setting("inoculation", "training"),
        code=code_hash("inoculation/train"),
    script:
        "../../scripts/inoculation/train.py"
