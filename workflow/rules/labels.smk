JUDGE_CACHE = "results/cache/judges.sqlite"


rule labels_deception:
    input:
        generations="results/generations/deception.parquet",
    output:
        labels="results/labels/deception.parquet",
        summary="results/labels/deception.summary.json",
    log:
        "logs/labels/deception.log",
    benchmark:
        "benchmarks/results/labels_deception.tsv"
    params:
        judge=DECEPTION_JUDGES["label"],
        classes=config["deception"]["banks"],
        cache=JUDGE_CACHE,
        code=code_hash("labels", "judges"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/label.py"


rule verbalize_deception:
    input:
        activations="results/activations/deception.parquet",
        generations="results/generations/deception.parquet",
    output:
        "results/labels/deception_nla.parquet",
    log:
        "logs/labels/deception_nla.log",
    benchmark:
        "benchmarks/results/verbalize_deception.tsv"
    params:
        judge=DECEPTION_JUDGES.get("verbalizer"),
        grader=DECEPTION_JUDGES["label"],
        classes=config["deception"]["banks"],
        layer=config["deception"]["probes"]["layer"],
        cache=JUDGE_CACHE,
        code=code_hash("labels", "judges"),
    conda:
        "../../envs/judge.yaml"
    script:
        "../../scripts/verbalize.py"
