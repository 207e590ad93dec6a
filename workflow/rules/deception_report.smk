# The deception study's report stages (glue: deception.smk): the findings row and the model
# card's one-target copy of the default instance's probe.

import shutil

# What an instance's findings row is (interpflow.findings.KINDS): a control instance's own row
# (another instance's probes.control, or a model declared init: random), or a finding.
deception_finding_kind = lambda wildcards: (
    "control"
    if instance_name("deception", wildcards) in DECEPTION_CONTROLS.values()
    or MODELS[instance("deception", wildcards)["model"]["name"]]["init"] == "random"
    else "finding"
)


# The headline beside its controls (interpflow.findings rows): the logreg probe's AUROC at the
# configured layer with its paired margins over the random-init copy (probes.control), the bag
# of words and the form-only baseline; the layer sweep is quoted as context. No model: local.
rule deception_findings:
    input:
        # control_metrics, if probes.control is set; transfer, if transfer.enabled
        unpack(lambda w: deception_control_metrics(w) | deception_transfer_metrics(w)),
        metrics=f"{DECEPTION}/probes/metrics.json",
        layer_sweep=f"{DECEPTION}/layer_sweep.csv",
    output:
        findings=f"{DECEPTION}/findings.json",
    log:
        "logs/deception/{instance}/findings.log",
    params:
        model=model_id("deception"),
        kind=deception_finding_kind,
        code=code_hash("deception/findings"),
    localrule: True
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/deception/findings.py"


# The model card's one-target command, `snakemake results/probes/logreg.joblib`: the default
# instance's probe, copied (declared only when the config has a `default` deception instance).
if "default" in INSTANCES["deception"]:

    rule deception_card:
        input:
            "results/deception/default/probes/logreg.joblib",
        output:
            "results/probes/logreg.joblib",
        log:
            "logs/deception/default/card.log",
        localrule: True
        run:
            shutil.copyfile(input[0], output[0])
