"""Rule inoculation_logprobs: per-example and per-token logprobs under every prefix condition."""

from interpflow.artifacts import log_to
from interpflow.inoculation import InocPrompt, logprob_stage
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    summary = logprob_stage(
        smk.input.data,
        smk.wildcards.dataset,
        smk.output.examples,
        smk.output.tokens,
        prompts={k: InocPrompt(**p) for k, p in smk.params.prompts.items()},
        rephrasings_path=smk.input.rephrasings,
        default_system=smk.params.default_system,
        model=ModelSpec(**smk.params.model),
        batch_size=smk.params.batch_size,
        model_id=smk.params.model_id,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
