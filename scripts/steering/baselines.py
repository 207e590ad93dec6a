"""Rule steering_baselines: RepE directions and their alpha-sweep; system-prompt baselines."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec
from interpflow.steering.baselines import run_baselines
from interpflow.steering.common import EvalConfig


def main(smk):
    summary = run_baselines(
        model=ModelSpec(**smk.params.model),
        personas=smk.input.personas,
        questions=smk.input.questions,
        prompts=smk.input.prompts,
        engineered=smk.input.engineered or None,  # [] when baselines.engineered is off
        eval_sets=dict(smk.params.eval_sets),
        out_directions=smk.output.directions,
        out_norms=smk.output.norms,
        out_repe=smk.output.repe,
        out_prompts=smk.output.prompts,
        config=from_config(EvalConfig, smk.params.eval, smk.params.key + ".eval"),
        n_questions=smk.params.n_questions,
        repe_form=smk.params.repe_form,
        repe_pairs=smk.params.repe_pairs,
        threads=smk.threads,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
