"""Rule generate_*: batched generation with residual-stream capture (resumable)."""

from interpflow.artifacts import log_to
from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig, generate_and_capture
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    gen = dict(smk.params.generation)
    run = RunConfig(batch_size=gen.pop("batch_size"), shard_size=gen.pop("shard_size"))
    cap = dict(smk.params.capture)
    cap["layers"], cap["positions"] = tuple(cap["layers"]), tuple(cap["positions"])
    summary = generate_and_capture(
        smk.input.prompts,
        smk.output.generations,
        smk.output.activations,
        smk.output.provenance,
        model=ModelSpec(**smk.params.model),
        sampling=SamplingConfig(**gen),
        capture=CaptureConfig(**cap),
        run=run,
        model_id=smk.params.model_id,
    )
    print({k: summary[k] for k in ("n_prompts", "n_activation_rows", "n_missing_positions")})


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
