"""Rule layer_sweep_*: one probe per captured layer, accuracy/AUROC by layer with CI bands."""

from interpflow.artifacts import log_to, read_parquet
from interpflow.probes import layer_sweep


def main(smk):
    p = smk.params.probes
    table = layer_sweep(
        smk.input.activations,
        read_parquet(smk.input.labels),
        target=p["target"],
        layers=list(smk.params.layers),
        positions=p["positions"],
        test_size=p["test_size"],
        seed=p["seed"],
        n_bootstrap=p["n_bootstrap"],
        out_png=smk.output.png,
        out_csv=smk.output.csv,
    )
    print(table)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
