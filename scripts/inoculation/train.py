"""Rule inoculation_train: one LoRA run with the shared trainer (interpflow.adapters)."""

from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    where = f"inoculation.{smk.wildcards.instance}.training"
    # prompts and conditions name the runs (the rule's wildcards); the rest is the recipe
    recipe = {k: v for k, v in smk.params.training.items() if k not in ("prompts", "conditions")}
    adapter = recipe.pop("adapter")
    summary = train_adapter(
        model=ModelSpec(**smk.params.model),
        data_path=smk.input.data,
        out_dir=smk.output[0],
        adapter=from_config(AdapterConfig, adapter, f"{where}.adapter"),
        train=from_config(TrainConfig, recipe, where),
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
