"""Rule tribunal_tokens: the traces re-read by the instance's model for the pre_answer window
(ends before the final answer) and, with probes.per_token, every response token's vector."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec
from interpflow.tribunal.common import CaptureSettings, LabelsConfig
from interpflow.tribunal.tokens import capture_tokens


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    key = f"tribunal.{smk.wildcards.instance}"
    p = smk.params
    summary = capture_tokens(
        generations=smk.input.generations,
        activations=smk.output.activations,
        spans=smk.output.spans,
        provenance=smk.output.provenance,
        model=ModelSpec(**p.model),
        capture=from_config(CaptureSettings, p.capture, f"{key}.capture"),
        labels_cfg=from_config(LabelsConfig, p.labels, f"{key}.labels"),
        per_token=bool(p.per_token),
        batch_size=int(p.batch_size),
        model_id=p.model_id,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
