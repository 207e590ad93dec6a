"""Rule inoculation_rephrasings: N rephrasings per inoculation prompt (the mix pool)."""

from interpflow.artifacts import log_to
from interpflow.inoculation import InocPrompt, make_rephrasings
from interpflow.judges import JudgeConfig


def main(smk):
    prompts = [InocPrompt(**p) for p in smk.params.prompts.values()]
    summary = make_rephrasings(
        prompts, smk.params.n, JudgeConfig(**smk.params.judge), smk.params.cache, smk.output[0]
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
