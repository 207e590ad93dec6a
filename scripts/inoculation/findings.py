"""Rule inoculation_findings: suppression (no-prefix run - inoculated run, default condition,
paired by eval item) beside the base model and what each run learned, from the scores stage."""

from interpflow.artifacts import log_to
from interpflow.findings import summary_text
from interpflow.inoculation.findings import inoculation_findings


def main(smk):
    rows = inoculation_findings(
        summary=smk.input.get("summary"),  # the score tables, or (em.only) the EM rates
        suppression=smk.input.get("suppression"),
        learning=smk.input.get("learning"),
        em_rates=smk.input.get("em_rates"),
        heldout={  # the held-out set's tables (empty without one); none with em.only
            k: smk.input.get(f"heldout_{k}") for k in ("summary", "suppression", "learning")
        },
        runs=smk.params.runs,
        prompts=smk.params.prompts,
        instance=smk.wildcards.instance,
        model=smk.params.model,
        findings=smk.output.findings,
    )
    print(summary_text(rows))


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
