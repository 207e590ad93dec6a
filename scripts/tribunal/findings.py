"""Rule tribunal_findings: the best probe AUROC beside its text controls (trace form, bag of
words) as paired margins, and the class balance, from the labels and probes stages' files."""

from interpflow.artifacts import log_to
from interpflow.findings import summary_text
from interpflow.tribunal.findings import tribunal_findings


def main(smk):
    stopping = smk.params.stopping
    rows = tribunal_findings(
        metrics=smk.input.metrics,
        summary=smk.input.summary,
        findings=smk.output.findings,
        instance=smk.wildcards.instance,
        model=smk.params.model,
        target_correct=int(stopping["target_correct"]),
        target_incorrect=int(stopping["target_incorrect"]),
    )
    print(summary_text(rows))


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
