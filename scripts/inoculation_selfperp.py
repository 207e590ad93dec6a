"""Rule inoculation_selfperp: NLL/token of each inoculation prompt, raw and in chat context."""

from interpflow.artifacts import log_to
from interpflow.inoculation import InocPrompt, selfperp_stage
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    summary = selfperp_stage(
        {k: InocPrompt(**p) for k, p in smk.params.prompts.items()},
        smk.params.default_system,
        ModelSpec(**smk.params.model),
        smk.output[0],
        smk.params.batch_size,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
