"""Rule inoculation_elicitation: the screen's trait scores, elicitation per prompt, figure."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.elicitation import elicitation_stage
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import JudgeConfig


def main(smk):
    out = smk.output
    summary = elicitation_stage(
        completions=smk.input.completions,
        prompts={k: from_config(InocPrompt, p) for k, p in smk.params.prompts.items()},
        traits=smk.params.traits,
        trait_judge=JudgeConfig(**smk.params.trait_judge),
        cache=smk.params.cache,
        min_mass=smk.params.min_mass,
        scale=smk.params.scale,
        scale_key=f"inoculation.{smk.wildcards.instance}.judges.trait_scale",
        out_scores=out.scores,
        out_table=out.table,
        png=out.png,
        csv=out.csv,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
