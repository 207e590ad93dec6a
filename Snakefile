# interpflow: one DAG from prompt banks to probes and figures.
# `snakemake -n all` plans; `snakemake --cores 2 all` runs the default (stub model, offline
# judge); `snakemake --configfile config/studies/<preset>.yaml ...` runs a paper-scale preset.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/stub.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/tribunal.smk"
include: "workflow/rules/inoculation.smk"
include: "workflow/rules/steering.smk"


rule all:
    input:
        all_targets(),
    default_target: True
    localrule: True
