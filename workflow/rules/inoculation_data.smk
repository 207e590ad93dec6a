# Inoculation, data stages: each training/eval dataset (rule inoculation_data) and the
# rephrasings of the prompts (rule inoculation_rephrasings). The study's plan, shared input
# functions and targets are in inoculation.smk.

from interpflow.inoculation.study import data_spec

# How the job's data table is made: an external JSONL, or datagen under a system prompt.
inoc_data_spec = lambda wildcards: data_spec(
    wildcards.dataset,
    instance("inoculation", wildcards),
    inoc("traits")(wildcards),
    inoc_data_file(wildcards),
)

# An external JSONL, or the instruction bank and the model that answers it.
inoc_data_input = lambda wildcards: (
    {"external": external}
    if (external := inoc_data_spec(wildcards)["external"])
    else {
        "instructions": inoc_data_file(wildcards)("train_instructions"),
        "model": model_input("inoculation")(wildcards),
    }
)


rule inoculation_data:
    input:
        unpack(inoc_data_input),
    output:
        f"{INOC_OUT}/data/{{dataset}}.parquet",
    log:
        f"{INOC_LOG}/data/{{dataset}}.log",
    benchmark:
        f"{INOC_BENCH}/data/{{dataset}}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        spec=inoc_data_spec,
        datagen=setting("inoculation", "datagen"),
        model=model_spec("inoculation"),
        code=code_hash("inoculation/data"),
    script:
        "../../scripts/inoculation/data.py"


rule inoculation_rephrasings:
    output:
        table=f"{INOC_OUT}/rephrasings.parquet",
        summary=f"{INOC_OUT}/rephrasings.parquet.summary.json",
    log:
        f"{INOC_LOG}/rephrasings.log",
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("prompts"),
        n=setting("inoculation", "rephrasings", "n"),
        judge=inoc("judges", "rephrase"),
        cache=JUDGE_CACHE,
        code=code_hash("inoculation/rephrasings"),
    script:
        "../../scripts/inoculation/rephrasings.py"
