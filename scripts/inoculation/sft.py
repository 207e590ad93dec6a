"""Rule inoculation_sft: the SFT set of one run under its training condition."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.sft import make_sft
from interpflow.inoculation.study import InocPrompt


def main(smk):
    summary = make_sft(
        run=smk.wildcards.run,
        data=smk.input.data,
        rephrasings=smk.input.get("rephrasings"),  # mix runs only
        prompts={k: from_config(InocPrompt, p) for k, p in smk.params.prompts.items()},
        default_system=smk.params.default_system,
        seed=smk.params.seed,
        out=smk.output[0],
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
