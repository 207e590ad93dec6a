"""Rule deception_quant_transfer: the full-precision probe on a 4-bit (NF4) copy of the model."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.common import ProbeConfig
from interpflow.deception.quant_transfer import QuantConfig, quant_transfer
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    inp, out, instance = smk.input, smk.output, smk.wildcards.instance
    quant_transfer(
        generations=inp.generations,
        activations=inp.activations,
        labels=inp.labels,
        probe=inp.probe,
        classes=inp.classes,
        test_indices=inp.test,
        probe_cfg=from_config(ProbeConfig, smk.params.probes, f"deception.{instance}.probes"),
        layers=tuple(smk.params.capture["layers"]),
        positions=list(smk.params.capture["positions"]),
        store_dtype=smk.params.capture["store_dtype"],
        model=ModelSpec(**smk.params.model),
        cfg=from_config(QuantConfig, smk.params.quant, f"deception.{instance}.quant_transfer"),
        out_metrics=out.metrics,
        out_cosine=out.cosine,
        out_figure=out.figure,
        out_activations_full=out.activations_full,
        out_activations_4bit=out.activations_4bit,
        nla=inp.get("nla"),  # only with probes.target verbalizer_label
    )


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
