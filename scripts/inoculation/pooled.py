"""Rule inoculation_pooled: the heuristic correlations pooled across the config's instances."""

from interpflow.artifacts import log_to
from interpflow.inoculation.pooled import pooled_stage


def main(smk):
    summary = pooled_stage(
        points=dict(zip(smk.params.instances, smk.input.points, strict=True)),
        png=smk.output.png,
        csv=smk.output.csv,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
