# Inoculation, report stages: the figures and their numbers (rule inoculation_report) and
# the findings (inoculation_findings). Plan and targets: inoculation.smk.

# Whether the job's instance runs experiment 18 alone (em.only).
inoc_em_only = lambda wildcards: instance("inoculation", wildcards)["em"]["only"]

# The heuristics behind the report's predictor figures, for an inoculating instance.
inoc_heuristics_input = lambda wildcards: (
    {
        name: f"{INOC_OUT}/heuristics/{file}".format(instance=wildcards.instance)
        for name, file in (
            ("heuristics", "heuristics.parquet"),
            ("embeddings", "embeddings.parquet"),
            ("angles", "angles.parquet"),
            ("angle_summary", "angle_summary.parquet"),
            ("meta", "W.json"),
            ("matrices", "W.safetensors"),
        )
    }
    if inoc_inoculated(instance_name("inoculation", wildcards))
    else {}
)

# The findings' tables: the scores stage's (the held-out set's too: empty without one), or
# (em.only) experiment 18's EM rates.
inoc_findings_input = lambda wildcards: (
    {"em_rates": f"{INOC_OUT}/em/em_rates.parquet".format(instance=wildcards.instance)}
    if inoc_em_only(wildcards)
    else {
        name: f"{INOC_OUT}/scores/{name}.parquet".format(instance=wildcards.instance)
        for name in ("summary", "suppression", "learning")
        + ("heldout_summary", "heldout_suppression", "heldout_learning")
    }
)


rule inoculation_report:
    input:
        unpack(inoc_heuristics_input),
        unpack(
            lambda wildcards: (
                {
                    "screen": f"{INOC_OUT}/elicitation/elicitation.parquet".format(
                        instance=wildcards.instance
                    )
                }
                if instance("inoculation", wildcards)["elicitation"]["enabled"]
                else {}
            )
        ),
        summary=f"{INOC_OUT}/scores/summary.parquet",
        suppression=f"{INOC_OUT}/scores/suppression.parquet",
        em=f"{INOC_OUT}/scores/em_rates.parquet",
    output:
        figures=[
            report(
                f"{INOC_OUT}/figures/{f}.png",
                caption=f"../report/inoculation/{f}.rst",
                category="Inoculation",
                subcategory="{instance}",
            )
            for f in INOC_FIGURES
        ],
        tables=expand(
            f"{INOC_OUT}/figures/{{f}}.csv", f=INOC_FIGURES, allow_missing=True
        ),
        dataset=f"{INOC_OUT}/dataset.csv",
        correlation_points=f"{INOC_OUT}/correlation_points.parquet",
    log:
        f"{INOC_LOG}/report.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        figures=list(INOC_FIGURES),
        prompts=inoc("prompts"),
        code=code_hash("inoculation/report"),
    script:
        "../../scripts/inoculation/report.py"


# The headline beside its controls (interpflow.findings rows): each inoculated run's
# suppression of its prompt's trait (paired by eval item) beside the base model and what the
# runs learned over it, from the scores stage's tables. No model: local.
rule inoculation_findings:
    input:
        unpack(inoc_findings_input),
    output:
        findings=f"{INOC_OUT}/findings.json",
    log:
        f"{INOC_LOG}/findings.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        runs=lambda wildcards: inoc("em_runs" if inoc_em_only(wildcards) else "runs")(wildcards),
        prompts=lambda wildcards: inoc("em_prompts" if inoc_em_only(wildcards) else "prompts")(
            wildcards
        ),
        model=model_id("inoculation"),
        code=code_hash("inoculation/findings"),
    script:
        "../../scripts/inoculation/findings.py"


# Seed 003's correlations pooled across experiments (Exp 22): every inoculating instance of the
# config is an experiment; its report's correlation points are pooled over instances and traits.
# Study-level output under results/inoculation/_pooled/ (an instance name starts with a letter
# or digit, so no instance can own that folder). No model: local.
rule inoculation_pooled:
    input:
        points=lambda wildcards: [
            f"results/inoculation/{name}/correlation_points.parquet" for name in inoc_pooled()
        ],
    output:
        png=report(
            "results/inoculation/_pooled/heuristic_correlations.png",
            caption="../report/inoculation/pooled_correlations.rst",
            category="Inoculation",
            subcategory="pooled",
        ),
        csv="results/inoculation/_pooled/heuristic_correlations.csv",
    log:
        "logs/inoculation/_pooled/heuristic_correlations.log",
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    params:
        instances=lambda wildcards: inoc_pooled(),
        code=code_hash("inoculation/pooled"),
    script:
        "../../scripts/inoculation/pooled.py"
