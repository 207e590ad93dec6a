"""Rule steering_report: deltas vs alpha = 0 with 95% CIs, figures with their tables."""

from pathlib import Path

from interpflow.artifacts import log_to
from interpflow.steering import steering_report


def main(smk):
    result = steering_report(
        list(smk.input.evals),
        Path(smk.output.summary).parent,
        overlap_paths=list(smk.input.overlaps),
    )
    print(result)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
