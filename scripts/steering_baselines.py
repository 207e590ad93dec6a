"""Rule steering_baselines: RepE directions and their alpha-sweep; system-prompt baselines."""

from interpflow.artifacts import log_to
from interpflow.models import ModelSpec
from interpflow.steering import EvalConfig, run_baselines


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    ev = dict(smk.params.eval)
    ev["alphas"] = tuple(float(a) for a in ev["alphas"])
    summary = run_baselines(
        ModelSpec(**smk.params.model),
        smk.input.personas,
        smk.input.questions,
        smk.input.prompts,
        dict(smk.params.eval_sets),
        smk.output.directions,
        smk.output.repe,
        smk.output.prompts,
        EvalConfig(**ev),
        n_questions=smk.params.n_questions,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
