"""Rule probes_*: logreg + MLP probes on one layer, with metrics, CIs and confusion matrices."""

from pathlib import Path

from interpflow.artifacts import log_to, read_parquet
from interpflow.probes import load_probe_dataset, train_probes


def main(smk):
    p = smk.params.probes
    dataset = load_probe_dataset(
        smk.input.activations,
        read_parquet(smk.input.labels),
        target=p["target"],
        layer=p["layer"],
        positions=p["positions"],
    )
    metrics = train_probes(
        dataset,
        Path(smk.output.metrics).parent,
        test_size=p["test_size"],
        seed=p["seed"],
        n_bootstrap=p["n_bootstrap"],
        mlp_params=p["mlp"],
    )
    for name, m in metrics["probes"].items():
        print(f"{name}: accuracy={m['accuracy']:.3f} auroc={m['auroc']}")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
