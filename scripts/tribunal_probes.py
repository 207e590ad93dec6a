"""Rule probes_tribunal: probes per layer x aggregation, implicit-value directions, figure."""

from pathlib import Path

from interpflow.artifacts import log_to, read_parquet
from interpflow.tribunal import fit_tribunal_probes


def main(smk):
    p = smk.params.probes
    metrics = fit_tribunal_probes(
        smk.input.activations,
        read_parquet(smk.input.labels),
        layers=list(smk.params.layers),
        aggregations=list(smk.params.aggregations),
        out_dir=Path(smk.output.metrics).parent,
        test_size=p["test_size"],
        seed=p["seed"],
        n_bootstrap=p["n_bootstrap"],
        C=p["C"],
        model_id=smk.params.model_id,
    )
    print(metrics["status"], metrics["reason"] or "", metrics["counts"])


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
