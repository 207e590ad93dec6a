"""Rule deception_transfer_capture: the transfer stage's evaluation sets and ordinary control
set through the instance's own model and capture settings, one table, one run
(interpflow.deception.transfer.capture_sets)."""

from pathlib import Path

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.generate import DeceptionCapture, GenerationConfig
from interpflow.deception.transfer import TransferConfig, capture_sets
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    key = f"deception.{smk.wildcards.instance}"
    cfg = from_config(TransferConfig, smk.params.transfer, f"{key}.transfer")
    sets = {name: [f"{d}/{c}.txt" for c in smk.params.banks] for name, d in cfg.sets.items()}
    summaries = capture_sets(
        sets=sets | {"control": [cfg.control_bank]},
        out_dir=Path(smk.output.activations).parent,
        model=ModelSpec(**smk.params.model),
        generation=from_config(GenerationConfig, smk.params.generation, f"{key}.generation"),
        capture=from_config(DeceptionCapture, smk.params.capture, f"{key}.capture"),
        model_id=smk.params.model_id,
    )
    for name, summary in summaries.items():
        print(f"{name}: {summary['n_prompts']} prompts {summary['per_category']}")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
