"""Rule inoculation_train: one LoRA run with the shared trainer (interpflow.adapters)."""

from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
from interpflow.artifacts import log_to
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    cfg = dict(smk.params.training)
    adapter = dict(cfg.pop("adapter"))
    adapter["target_modules"] = tuple(adapter["target_modules"])
    for key in ("prompts", "conditions"):
        cfg.pop(key)
    cfg["save_steps"] = tuple(cfg["save_steps"])
    summary = train_adapter(
        ModelSpec(**smk.params.model),
        smk.input.data,
        smk.output[0],
        AdapterConfig(**adapter),
        TrainConfig(**cfg),
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
