"""Rule inoculation_rephrasings: N rephrasings per inoculation prompt (the mix pool)."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.rephrasings import make_rephrasings
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import JudgeConfig


def main(smk):
    summary = make_rephrasings(
        prompts=[from_config(InocPrompt, p) for p in smk.params.prompts.values()],
        n=smk.params.n,
        judge=JudgeConfig(**smk.params.judge),
        cache=smk.params.cache,
        out=smk.output.table,
        out_summary=smk.output.summary,
        style=smk.params.get("style", "diverse"),  # close: experiment 18's close rephrasings
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
