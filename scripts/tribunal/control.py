"""Rule tribunal_control: the instance's traces re-read (teacher forcing) by its control model
(probes.control, e.g. a random-init copy), captured at the same layers and aggregations."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec
from interpflow.tribunal.common import CaptureSettings, LabelsConfig
from interpflow.tribunal.control import capture_control


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    p = smk.params
    summary = capture_control(
        generations=smk.input.generations,
        activations=smk.output.activations,
        provenance=smk.output.provenance,
        model=ModelSpec(**p.model),
        capture=from_config(
            CaptureSettings, p.capture, f"tribunal.{smk.wildcards.instance}.capture"
        ),
        batch_size=int(p.batch_size),
        model_id=p.model_id,
        last_number_fallback=from_config(
            LabelsConfig, p.labels, f"tribunal.{smk.wildcards.instance}.labels"
        ).last_number_fallback,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
