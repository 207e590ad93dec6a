"""Rule inoculation_sft: the SFT set of one run under its training condition."""

from interpflow.artifacts import log_to
from interpflow.inoculation import InocPrompt, make_sft


def main(smk):
    summary = make_sft(
        smk.input.data,
        smk.output[0],
        smk.wildcards.run,
        {k: InocPrompt(**p) for k, p in smk.params.prompts.items()},
        smk.input.rephrasings,
        smk.params.default_system,
        smk.params.seed,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
