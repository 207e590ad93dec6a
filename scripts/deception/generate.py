"""Rule deception_generate: batched generation with residual-stream capture (resumable), one
call of the engine (interpflow.generate.generate_and_capture)."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.generate import DeceptionCapture, GenerationConfig
from interpflow.generate import generate_and_capture
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    key = f"deception.{smk.wildcards.instance}"
    gen = from_config(GenerationConfig, smk.params.generation, f"{key}.generation")
    summary = generate_and_capture(
        prompts_path=smk.input.prompts,
        generations_path=smk.output.generations,
        activations_path=smk.output.activations,
        provenance_path=smk.output.provenance,
        model=ModelSpec(**smk.params.model),
        sampling=gen.sampling(),
        capture=from_config(DeceptionCapture, smk.params.capture, f"{key}.capture"),
        run=gen.run(),
        model_id=smk.params.model_id,
    )
    print({k: summary[k] for k in ("n_prompts", "n_activation_rows", "n_missing_positions")})


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
