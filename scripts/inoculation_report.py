"""Rule inoculation_report: every figure of the study (each with its CSV) + heuristic correlations."""

from pathlib import Path

from interpflow.artifacts import log_to
from interpflow.inoculation import report_stage


def main(smk):
    summary = report_stage(
        smk.input.summary,
        smk.input.suppression,
        smk.input.em,
        smk.input.heuristics,
        smk.input.embeddings,
        smk.input.angles,
        smk.input.meta,
        Path(smk.output.correlations).parent,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
