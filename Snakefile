# interpflow: one DAG from prompt banks to probes, adapters, weight diffs and figures.
# `snakemake -n all` plans; `snakemake --cores 2 all` runs the default (stub model, offline
# judge); `snakemake all --configfile config/studies/<preset>.yaml` runs a paper-scale preset
# (a preset means exactly the instances it declares).
#
# Naming: a stage has one name, used five times: rule <study>_<stage>,
# scripts/<study>/<stage>.py, src/interpflow/<study>/<stage>.py,
# tests/<study>/test_<stage>.py, results/<study>/<instance>/<stage>...

from snakemake.utils import min_version

from interpflow.config_id import config_id, normalized

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/model_sources.smk"
include: "workflow/rules/judges.smk"
include: "workflow/rules/planning_checks.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/deception.smk"
include: "workflow/rules/deception_data.smk"
include: "workflow/rules/deception_probes.smk"
include: "workflow/rules/deception_transfer.smk"
include: "workflow/rules/deception_report.smk"
include: "workflow/rules/tribunal.smk"
include: "workflow/rules/inoculation.smk"
include: "workflow/rules/inoculation_data.smk"
include: "workflow/rules/inoculation_heuristics.smk"
include: "workflow/rules/inoculation_train.smk"
include: "workflow/rules/inoculation_eval.smk"
include: "workflow/rules/inoculation_report.smk"
include: "workflow/rules/inoculation_em.smk"
include: "workflow/rules/inoculation_elicitation.smk"
include: "workflow/rules/steering.smk"
include: "workflow/rules/steering_data.smk"
include: "workflow/rules/steering_train.smk"
include: "workflow/rules/steering_eval.smk"
include: "workflow/rules/steering_report.smk"
include: "workflow/rules/atlas.smk"


# Every GPU rule's peak GPU memory beside what it asks for (printed; a rule that cannot fit
# stops the plan here, naming the keys that would make it fit: interpflow.memory).
check_gpu_memory(ATLAS_MODELS)

# What spans this config's instances (the findings table, the ledgers) lives under
# results/findings/<config-id>/, named after the config files given (interpflow.config_id):
# `default` with none, `reference` for make run's presets, a preset's stem, a hash when layered.
# (paths relative to the working directory, where results/ is, or else to the repository)
CONFIG_ROOTS = [".", workflow.basedir]
CONFIG_FILES = [
    normalized(path=f, roots=CONFIG_ROOTS) for f in workflow.overwrite_configfiles or []
]
CONFIG_ID = config_id(configfiles=CONFIG_FILES, roots=CONFIG_ROOTS)
FINDINGS = f"results/findings/{CONFIG_ID}"


rule all:
    input:
        deception_targets(),
        tribunal_targets(),
        inoculation_targets(),
        steering_targets(),
        atlas_targets(),
        f"{FINDINGS}/findings.md",
    default_target: True
    localrule: True


# Every instance's headline findings beside their controls, in one table, and the run's cost
# ledgers, for this config's instances: `make run` prints it; `python -m interpflow.findings
# results/findings/reference/findings.json --readme README.md` writes it into the README.
rule findings:
    input:
        findings=[
            f"results/{study}/{name}/findings.json"
            for study in STUDIES
            for name in INSTANCES[study]
        ],
    output:
        json=f"{FINDINGS}/findings.json",
        md=f"{FINDINGS}/findings.md",
        configfiles=f"{FINDINGS}/configfiles.json",
        html=report(
            f"{FINDINGS}/findings.html",
            caption="workflow/report/findings.rst",
            category="Findings",
        ),
        ledger=report(
            f"{FINDINGS}/ledger.csv",
            caption="workflow/report/ledger.rst",
            category="Findings",
        ),
        judges=report(
            f"{FINDINGS}/judge_ledger.csv",
            caption="workflow/report/judge_ledger.rst",
            category="Findings",
        ),
    log:
        f"logs/findings/{CONFIG_ID}.log",
    params:
        configfiles=CONFIG_FILES,
        config_id=CONFIG_ID,
        code=code_hash("findings"),
    localrule: True
    conda:
        "envs/cpu.yaml"
    script:
        "scripts/findings.py"
