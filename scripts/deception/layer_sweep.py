"""Rule deception_layer_sweep: one probe per captured layer, accuracy/AUROC by layer with CI
bands."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.common import ProbeConfig
from interpflow.deception.layer_sweep import layer_sweep


def main(smk):
    table = layer_sweep(
        activations=smk.input.activations,
        labels=smk.input.labels,
        png=smk.output.png,
        csv=smk.output.csv,
        layers=list(smk.params.layers),
        prompts=smk.input.prompts,
        nla=smk.input.get("nla"),  # only with probes.target verbalizer_label
        cfg=from_config(
            ProbeConfig, smk.params.probes, f"deception.{smk.wildcards.instance}.probes"
        ),
    )
    print(table)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
