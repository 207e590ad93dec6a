"""Rule inoculation_elicitation_completions: the base model's answers, no prefix and each prompt
(fixed, and mixed from its rephrasings with elicitation.mix)."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.elicitation import elicitation_completions
from interpflow.inoculation.eval import EvalConfig
from interpflow.inoculation.study import InocPrompt
from interpflow.models import ModelSpec


def main(smk):
    summary = elicitation_completions(
        eval_instructions=smk.input.eval_instructions,
        n_eval=smk.params.n_eval,
        prompts={k: from_config(InocPrompt, p) for k, p in smk.params.prompts.items()},
        default_system=smk.params.default_system,
        model=ModelSpec(**smk.params.model),
        cfg=from_config(EvalConfig, smk.params.eval, f"inoculation.{smk.wildcards.instance}.eval"),
        threads=smk.threads,
        rephrasings=smk.input.get("rephrasings"),  # elicitation.mix only
        out=smk.output[0],
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
