# Inoculation, the elicitation screen: rules inoculation_elicitation_*. Plan and targets:
# inoculation.smk.


# The elicitation screen (elicitation.enabled): the base model's answers to the eval
# instructions with no prefix, under every prompt as a fixed prefix and (elicitation.mix) under
# its rephrasings, one per instruction (one model load), then each trait judged and the paired
# elicitation per prompt and prefix type.
inoc_elicitation_rephrasings = lambda wildcards: (
    {"rephrasings": f"{INOC_OUT}/rephrasings.parquet".format(instance=wildcards.instance)}
    if instance("inoculation", wildcards)["elicitation"]["mix"]
    else {}
)


rule inoculation_elicitation_completions:
    input:
        unpack(inoc_elicitation_rephrasings),
        eval_instructions=lambda wildcards: inoc_data_file(wildcards)("eval_instructions"),
        model=model_input("inoculation"),
    output:
        f"{INOC_OUT}/elicitation/completions.parquet",
    log:
        f"{INOC_LOG}/elicitation/completions.log",
    benchmark:
        f"{INOC_BENCH}/elicitation/completions.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: model_threads("inoculation")
    resources:
        gpu=model_gpus("inoculation"),
    params:
        n_eval=lambda wildcards: (
            instance("inoculation", wildcards)["elicitation"]["n_eval"]
            or instance("inoculation", wildcards)["data"]["n_eval"]
        ),
        prompts=inoc("prompts"),
        default_system=setting("inoculation", "default_system"),
        eval=setting("inoculation", "eval"),
        model=model_spec("inoculation"),
        code=code_hash("inoculation/elicitation_completions"),
    script:
        "../../scripts/inoculation/elicitation_completions.py"


rule inoculation_elicitation:
    input:
        completions=f"{INOC_OUT}/elicitation/completions.parquet",
    output:
        scores=f"{INOC_OUT}/elicitation/scores.parquet",
        table=f"{INOC_OUT}/elicitation/elicitation.parquet",
        png=report(
            f"{INOC_OUT}/figures/elicitation.png",
            caption="../report/inoculation/elicitation.rst",
            category="Inoculation",
            subcategory="{instance}",
        ),
        csv=f"{INOC_OUT}/figures/elicitation.csv",
    log:
        f"{INOC_LOG}/elicitation/elicitation.log",
    conda:
        "../../envs/judge.yaml"
    params:
        prompts=inoc("prompts"),
        traits=inoc("traits"),
        trait_judge=inoc("judges", "trait"),
        min_mass=setting("inoculation", "judges", "min_mass"),
        scale=setting("inoculation", "judges", "trait_scale"),
        cache=JUDGE_CACHE,
        code=code_hash("inoculation/elicitation"),
    script:
        "../../scripts/inoculation/elicitation.py"
