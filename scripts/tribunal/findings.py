"""Rule tribunal_findings: the best probe AUROC beside its text controls (trace form, bag of
words) as paired margins, and the class balance, from the labels and probes stages' files."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.findings import summary_text
from interpflow.tribunal.common import StoppingConfig
from interpflow.tribunal.findings import tribunal_findings


def main(smk):
    key = f"tribunal.{smk.wildcards.instance}"
    stopping = from_config(StoppingConfig, smk.params.stopping, f"{key}.stopping").resolved(
        smk.params.test_size
    )
    rows = tribunal_findings(
        metrics=smk.input.metrics,
        summary=smk.input.summary,
        findings=smk.output.findings,
        instance=smk.wildcards.instance,
        model=smk.params.model,
        target_correct=stopping.target_correct,
        target_incorrect=stopping.target_incorrect,
        max_attempts=stopping.max_attempts,
    )
    print(summary_text(rows))


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
