"""Rule tribunal_prompts: load GSM8K-format problems and write the attempt table."""

from interpflow.artifacts import log_to
from interpflow.tribunal import prepare_tribunal


def main(smk):
    p = smk.params.problems
    prompts = prepare_tribunal(
        source=p["source"],
        hub_config=p["hub_config"],
        split=p["split"],
        instruction=smk.params.instruction,
        samples_per_problem=smk.params.samples_per_problem,
        max_attempts=smk.params.max_attempts,
        shuffle=p["shuffle"],
        seed=smk.params.seed,
        problems_out=smk.output.problems,
        prompts_out=smk.output.prompts,
    )
    print(f"{prompts.height} attempts over {prompts['problem_id'].n_unique()} problems")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
