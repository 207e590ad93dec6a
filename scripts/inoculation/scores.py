"""Rule inoculation_scores: judged trait scores, EM rates, mean ± 95% CI, suppression, learning."""

from interpflow.artifacts import log_to
from interpflow.inoculation.scores import score_evals
from interpflow.judges import JudgeConfig


def main(smk):
    em, out = smk.params.em_judge, smk.output
    summary = score_evals(
        evals=list(smk.input.evals),
        traits=smk.params.traits,
        trait_judge=JudgeConfig(**smk.params.trait_judge),
        em_judge=JudgeConfig(**em) if em else None,
        cache=smk.params.cache,
        min_mass=smk.params.min_mass,
        trait_scale=smk.params.trait_scale,
        em_scale=smk.params.em_scale,
        config_key=f"inoculation.{smk.wildcards.instance}.judges",
        out_scores=out.scores,
        out_summary=out.summary,
        out_em=out.em,
        out_suppression=out.suppression,
        out_learning=out.learning,
        out_heldout={
            "summary": out.heldout_summary,
            "suppression": out.heldout_suppression,
            "learning": out.heldout_learning,
        },
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
