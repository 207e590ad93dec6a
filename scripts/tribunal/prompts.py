"""Rule tribunal_prompts: load GSM8K-format problems and write the attempt table."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.tribunal.common import ProblemsConfig
from interpflow.tribunal.prompts import prepare_prompts


def main(smk):
    where = f"tribunal.{smk.wildcards.instance}.problems"
    prompts = prepare_prompts(
        problems_cfg=from_config(ProblemsConfig, smk.params.problems, where),
        instruction=smk.params.instruction,
        samples_per_problem=smk.params.samples_per_problem,
        max_attempts=smk.params.max_attempts,
        seed=smk.params.seed,
        problems=smk.output.problems,
        prompts=smk.output.prompts,
        provenance=smk.output.provenance,
        where=where,
    )
    print(f"{prompts.height} attempts over {prompts['problem_id'].n_unique()} problems")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
