"""Rule deception_findings: the headline probe AUROC beside its controls (random-init copy,
bag of words, form only) as paired margins, from the probe stages' files."""

from interpflow.artifacts import log_to
from interpflow.deception.findings import deception_findings
from interpflow.findings import summary_text


def main(smk):
    rows = deception_findings(
        metrics=smk.input.metrics,
        findings=smk.output.findings,
        instance=smk.wildcards.instance,
        model=smk.params.model,
        control_metrics=smk.input.get("control_metrics"),  # only with probes.control set
        layer_sweep=smk.input.layer_sweep,
        kind=smk.params.kind,  # control: a control instance's own row, not a finding
        transfer=smk.input.get("transfer"),  # only with transfer.enabled: a row per eval set
    )
    print(summary_text(rows))


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
