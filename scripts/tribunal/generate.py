"""Rule tribunal_generate: sample chains of thought + capture, until the targets are reached."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec
from interpflow.tribunal.common import (
    CaptureSettings,
    GenerationConfig,
    LabelsConfig,
    StoppingConfig,
)
from interpflow.tribunal.generate import collect_traces


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    key = f"tribunal.{smk.wildcards.instance}"
    p = smk.params
    summary = collect_traces(
        prompts=smk.input.prompts,
        generations=smk.output.generations,
        activations=smk.output.activations,
        provenance=smk.output.provenance,
        model=ModelSpec(**p.model),
        generation=from_config(GenerationConfig, p.generation, f"{key}.generation"),
        system_prompt=p.system_prompt,
        capture=from_config(CaptureSettings, p.capture, f"{key}.capture"),
        stopping=from_config(StoppingConfig, p.stopping, f"{key}.stopping").resolved(p.test_size),
        labels_cfg=from_config(LabelsConfig, p.labels, f"{key}.labels"),
        model_id=p.model_id,
    )
    print({k: summary[k] for k in ("n_prompts", "n_shards_used", "n_shards", "stopped_early")})


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
