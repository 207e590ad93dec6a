# Weight steering, report stages (no model): the report's deltas and figures (rule
# steering_report), the findings (rule steering_findings) and the across-seed table of a
# train.seed sweep (rule steering_seeds). The study's glue is in steering.smk.

rule steering_report:
    input:
        evals=steering_families(
            "evals/weight_{family}.parquet", "diagnostics/{family}_projection.parquet"
        ),
        baselines=[f"{STEERING}/evals/repe.parquet", f"{STEERING}/evals/prompts.parquet"],
        overlaps=steering_families("diagnostics/{family}_overlap.parquet"),
    output:
        summary=f"{STEERING}/report/summary.parquet",
        summary_csv=f"{STEERING}/report/summary.csv",
        json=f"{STEERING}/report/summary.json",
        alpha=report(
            f"{STEERING}/report/alpha_vs_score.png",
            caption="../report/steering_alpha.rst",
            category="Weight steering",
            subcategory="{instance}",
        ),
        alpha_csv=f"{STEERING}/report/alpha_vs_score.csv",
        bars=report(
            f"{STEERING}/report/baselines_vs_weight.png",
            caption="../report/steering_baselines.rst",
            category="Weight steering",
            subcategory="{instance}",
        ),
        bars_csv=f"{STEERING}/report/baselines_vs_weight.csv",
        pmass=report(
            f"{STEERING}/report/pmass.png",
            caption="../report/steering_pmass.rst",
            category="Weight steering",
            subcategory="{instance}",
        ),
        pmass_csv=f"{STEERING}/report/pmass.csv",
        diagnostics=f"{STEERING}/report/diagnostics.csv",
        projection=f"{STEERING}/report/projection.csv",
    log:
        "logs/steering/{instance}/report.log",
    params:
        code=code_hash("steering/report"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/steering/report.py"


rule steering_findings:
    input:
        evals=steering_families("evals/weight_{family}.parquet"),
        baselines=[f"{STEERING}/evals/repe.parquet", f"{STEERING}/evals/prompts.parquet"],
    output:
        findings=f"{STEERING}/findings.json",
    log:
        "logs/steering/{instance}/findings.log",
    params:
        families=lambda wildcards: instance("steering", wildcards)["families"],
        findings=setting("steering", "findings"),
        model=model_id("steering"),
        key=steering_key,
        code=code_hash("steering/findings"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/steering/findings.py"


# Seed 004's multi-seed runs: the instances of one train.seed sweep, across seeds.
rule steering_seeds:
    input:
        summaries=lambda wildcards: [
            f"results/steering/{name}/report/summary.parquet"
            for name in steering_seed_groups()[wildcards.group]
        ],
    output:
        csv="results/steering/{group}-seeds/seeds.csv",
        json="results/steering/{group}-seeds/seeds.json",
        png=report(
            "results/steering/{group}-seeds/alpha_vs_score.png",
            caption="../report/steering_seeds.rst",
            category="Weight steering",
            subcategory="{group} (across seeds)",
        ),
        png_csv="results/steering/{group}-seeds/alpha_vs_score.csv",
    log:
        "logs/steering/{group}-seeds/seeds.log",
    params:
        seeds=lambda wildcards: list(steering_seed_groups()[wildcards.group].values()),
        code=code_hash("steering/seeds"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/steering/seeds.py"
