"""Rule steering_seeds: across-seed means and t-intervals of one train.seed sweep."""

from interpflow.artifacts import log_to
from interpflow.steering.seeds import steering_seeds


def main(smk):
    table = steering_seeds(
        summaries=dict(zip(smk.params.seeds, smk.input.summaries, strict=True)),
        out_csv=smk.output.csv,
        out_json=smk.output.json,
        out_png=smk.output.png,
        out_png_csv=smk.output.png_csv,
    )
    print(f"{table.height} rows over seeds {list(smk.params.seeds)}")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
