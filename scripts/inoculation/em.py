"""Rule inoculation_em: experiment 18's coherence/alignment scores, EM rates (Wilson CI), figure."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.em import em_stage
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import JudgeConfig


def main(smk):
    out = smk.output
    summary = em_stage(
        evals=list(smk.input.evals),
        prompts={k: from_config(InocPrompt, p) for k, p in smk.params.prompts.items()},
        em_judge=JudgeConfig(**smk.params.em_judge),
        cache=smk.params.cache,
        min_mass=smk.params.min_mass,
        scale=smk.params.scale,
        scale_key=f"inoculation.{smk.wildcards.instance}.judges.em_scale",
        out_scores=out.scores,
        out_rates=out.rates,
        png=out.png,
        csv=out.csv,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
