"""Rule inoculation_logprobs: per-example/per-token logprobs of every data table under every
prefix condition, and the prompts' self-perplexity (one model load)."""

from pathlib import Path

from interpflow.artifacts import log_to
from interpflow.inoculation import InocPrompt, logprob_stage
from interpflow.models import ModelSpec


def main(smk):
    summary = logprob_stage(
        dict(zip(smk.params.datasets, smk.input.data)),
        Path(smk.output.selfperp).parent,
        prompts={k: InocPrompt(**p) for k, p in smk.params.prompts.items()},
        rephrasings_path=smk.input.rephrasings,
        default_system=smk.params.default_system,
        model=ModelSpec(**smk.params.model),
        batch_size=smk.params.batch_size,
        model_id=smk.params.model_id,
        threads=smk.threads,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
