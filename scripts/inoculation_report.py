"""Rule inoculation_report: every figure of the study (each with its CSV) + heuristic correlations."""

from interpflow.artifacts import log_to
from interpflow.inoculation import report_stage


def main(smk):
    summary = report_stage(
        smk.input.summary,
        smk.input.suppression,
        smk.input.em,
        smk.params.heur_dir,
        smk.params.out_dir,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
