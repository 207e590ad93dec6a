"""Rule deception_protocol: the probe protocol (control set at 1% FPR, probe types, random
directions, transfer matrix, leakage audit) on one deception instance."""

from pathlib import Path

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.common import ProbeConfig
from interpflow.deception.generate import DeceptionCapture, GenerationConfig
from interpflow.deception.protocol import ProtocolConfig, protocol_stage
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    key, inp = f"deception.{smk.wildcards.instance}", smk.input
    m = protocol_stage(
        activations=inp.activations,
        labels=inp.labels,
        prompts=inp.prompts,
        train_indices=inp.train,
        test_indices=inp.test,
        model=ModelSpec(**smk.params.model),
        generation=from_config(GenerationConfig, smk.params.generation, f"{key}.generation"),
        capture=from_config(DeceptionCapture, smk.params.capture, f"{key}.capture"),
        probe_cfg=from_config(ProbeConfig, smk.params.probes, f"{key}.probes"),
        cfg=from_config(ProtocolConfig, smk.params.protocol, f"{key}.protocol"),
        model_id=smk.params.model_id,
        out_dir=Path(smk.output.metrics).parent,
        nla=inp.get("nla"),  # only with probes.target verbalizer_label
    )
    for name, r in m["probes"].items():
        print(
            f"{name}: AUROC {r['auroc']:.3f} {r['auroc_ci']}, recall@{m['fpr']:.0%}FPR "
            f"{r['recall']:.3f} {r['recall_ci']}"
        )
    print(f"random directions: {m['random_directions']}")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
