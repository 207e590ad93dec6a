# interpflow: one DAG from prompt banks to probes, adapters, weight diffs and figures.
# `snakemake -n all` plans; `snakemake --cores 2 all` runs the default (stub model, offline
# judge); `snakemake all --configfile config/studies/<preset>.yaml` runs a paper-scale preset
# (a preset means exactly the instances it declares).
#
# Naming: a stage has one name, used five times: rule <study>_<stage>,
# scripts/<study>/<stage>.py, src/interpflow/<study>/<stage>.py,
# tests/<study>/test_<stage>.py, results/<study>/<instance>/<stage>...

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/deception.smk"
include: "workflow/rules/tribunal.smk"
include: "workflow/rules/inoculation.smk"
include: "workflow/rules/steering.smk"
include: "workflow/rules/atlas.smk"


# Every GPU rule's peak GPU memory beside what it asks for (printed; a rule that cannot fit
# stops the plan here, naming the keys that would make it fit: interpflow.memory).
check_gpu_memory(ATLAS_MODELS)


rule all:
    input:
        deception_targets(),
        tribunal_targets(),
        inoculation_targets(),
        steering_targets(),
        atlas_targets(),
        "results/findings.md",
    default_target: True
    localrule: True


# Every instance's headline findings beside their controls, in one table: `make run` prints
# it and writes it into the README's "Reference run" (interpflow.findings).
rule findings:
    input:
        findings=[
            f"results/{study}/{name}/findings.json"
            for study in STUDIES
            for name in INSTANCES[study]
        ],
    output:
        json="results/findings.json",
        md="results/findings.md",
        html=report(
            "results/findings.html",
            caption="workflow/report/findings.rst",
            category="Findings",
        ),
        ledger=report(
            "results/ledger.csv",
            caption="workflow/report/ledger.rst",
            category="Findings",
        ),
        judges=report(
            "results/judge_ledger.csv",
            caption="workflow/report/judge_ledger.rst",
            category="Findings",
        ),
    log:
        "logs/findings.log",
    params:
        code=code_hash("findings"),
    localrule: True
    conda:
        "envs/cpu.yaml"
    script:
        "scripts/findings.py"
