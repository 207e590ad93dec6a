"""Rule steering_findings: the dW shift of the signed Yes/No log-ratio beside its controls."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.steering.findings import FindingsConfig, steering_findings


def main(smk):
    findings = steering_findings(
        evals=list(smk.input.evals),
        baselines=list(smk.input.baselines),
        families=list(smk.params.families),
        out=smk.output.findings,
        instance=smk.wildcards.instance,
        model=smk.params.model,
        config=from_config(FindingsConfig, smk.params.findings, smk.params.key + ".findings"),
    )
    for f in findings:
        print(f)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
