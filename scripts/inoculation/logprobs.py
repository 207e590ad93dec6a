"""Rule inoculation_logprobs: per-example/per-token logprobs of every data table under every
prefix condition, and the prompts' self-perplexity (one model load)."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.logprobs import logprob_stage
from interpflow.inoculation.study import InocPrompt
from interpflow.models import ModelSpec


def main(smk):
    inp, out = smk.input, smk.output
    summary = logprob_stage(
        train=inp.train,
        neutral=inp.neutral,
        traits=dict(zip(smk.params.trait_datasets, inp.traits, strict=True)),
        rephrasings=inp.rephrasings,
        prompts={k: from_config(InocPrompt, p) for k, p in smk.params.prompts.items()},
        default_system=smk.params.default_system,
        model=ModelSpec(**smk.params.model),
        batch_size=smk.params.batch_size,
        subsample=smk.params.subsample,
        subsample_seed=smk.params.subsample_seed,
        model_id=smk.params.model_id,
        threads=smk.threads,
        out_train=out.train,
        out_train_tokens=out.train_tokens,
        out_neutral=out.neutral,
        out_neutral_tokens=out.neutral_tokens,
        out_traits=out.traits,
        out_traits_tokens=out.traits_tokens,
        out_selfperp=out.selfperp,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
