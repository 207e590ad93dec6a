"""Rule inoculation_scores: judged trait scores and EM rates, mean ± 95% CI, suppression."""

from interpflow.artifacts import log_to
from interpflow.inoculation import score_evals
from interpflow.judges import JudgeConfig


def main(smk):
    em = smk.params.em_judge
    summary = score_evals(
        list(smk.input),
        smk.params.traits,
        JudgeConfig(**smk.params.trait_judge),
        JudgeConfig(**em) if em else None,
        smk.params.cache,
        smk.params.min_mass,
        smk.output.scores,
        smk.output.summary,
        smk.output.em,
        smk.output.suppression,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
