# The deception study's data stages (glue: deception.smk): the instance's prompt table, the
# generations with their residual capture, the judge's labels, the verbalizer's texts and the
# judges' agreement on the gold slice.

import re

rule deception_prompts:
    input:
        banks=deception_banks,
    output:
        table=f"{DECEPTION}/prompts.parquet",
        summary=f"{DECEPTION}/prompts.summary.json",
    log:
        "logs/deception/{instance}/prompts.log",
    params:
        code=code_hash("deception/prompts"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/prompts.py"


rule deception_generate:
    input:
        prompts=f"{DECEPTION}/prompts.parquet",
        model=model_input("deception"),
    output:
        generations=f"{DECEPTION}/generations.parquet",
        activations=f"{DECEPTION}/activations.parquet",
        provenance=f"{DECEPTION}/activations.parquet.provenance.json",
    log:
        "logs/deception/{instance}/generate.log",
    benchmark:
        "benchmarks/results/deception/{instance}/generate.tsv"
    params:
        model=model_spec("deception"),
        model_id=model_id("deception"),
        generation=setting("deception", "generation"),
        capture=setting("deception", "capture"),
        code=code_hash("deception/generate"),
    threads: model_threads("deception")
    resources:
        gpu=model_gpus("deception"),
    conda:
        "../../envs/gpu.yaml"
    script:
        "../../scripts/deception/generate.py"


rule deception_labels:
    input:
        generations=f"{DECEPTION}/generations.parquet",
    output:
        labels=f"{DECEPTION}/labels.parquet",
        summary=f"{DECEPTION}/labels.summary.json",
    log:
        "logs/deception/{instance}/labels.log",
    benchmark:
        "benchmarks/results/deception/{instance}/labels.tsv"
    params:
        judge=deception_judge("label"),
        classes=setting("deception", "banks"),
        cache=JUDGE_CACHE,
        code=code_hash("deception/labels"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/deception/labels.py"


rule deception_verbalize:
    input:
        activations=f"{DECEPTION}/activations.parquet",
        generations=f"{DECEPTION}/generations.parquet",
        labels=f"{DECEPTION}/labels.parquet",  # the category x judge-label table beside it
    output:
        nla=f"{DECEPTION}/labels_nla.parquet",
        # how the grader files each category's verbalizer texts (seed 000's discussion)
        table_csv=f"{DECEPTION}/labels_nla.category.csv",
        table_md=f"{DECEPTION}/labels_nla.category.md",
    log:
        "logs/deception/{instance}/verbalize.log",
    benchmark:
        "benchmarks/results/deception/{instance}/verbalize.tsv"
    wildcard_constraints:
        # only instances with the verbalizer enabled (no rule makes the file for the others)
        instance="|".join(map(re.escape, DECEPTION_VERBALIZED)) or "(?!)",
    params:
        judge=deception_judge("verbalizer"),
        grader=deception_judge("label"),
        classes=setting("deception", "banks"),
        layer=setting("deception", "probes", "layer"),
        cache=JUDGE_CACHE,
        code=code_hash("deception/verbalize"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/deception/verbalize.py"


# How far to trust the labels: each judge's accuracy on the shipped gold slice, and Cohen's
# kappa between the label judge and labels.agreement.judges on the same generations.
rule deception_agreement:
    input:
        generations=f"{DECEPTION}/generations.parquet",
        gold=lambda wildcards: existing_file(
            instance("deception", wildcards)["labels"]["agreement"]["gold"],
            f"deception.{wildcards.instance}.labels.agreement.gold",
        ),
    output:
        agreement=f"{DECEPTION}/labels.agreement.json",
    log:
        "logs/deception/{instance}/agreement.log",
    benchmark:
        "benchmarks/results/deception/{instance}/agreement.tsv"
    params:
        judges=lambda wildcards: [
            judge(name, f"deception.{wildcards.instance}.labels.agreement.judges")
            for inst in [instance("deception", wildcards)]
            for name in dict.fromkeys(
                [inst["labels"]["judge"], *inst["labels"]["agreement"]["judges"]]
            )
        ],
        classes=setting("deception", "banks"),
        cache=JUDGE_CACHE,
        code=code_hash("deception/agreement"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/deception/agreement.py"
