"""Rule steering_eval: alpha-sweep of base + alpha*dW and subspace diagnostics for one family."""

from interpflow.artifacts import log_to
from interpflow.models import ModelSpec
from interpflow.steering import EvalConfig, evaluate_family


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    ev = dict(smk.params.eval)
    ev["alphas"] = tuple(float(a) for a in ev["alphas"])
    summary = evaluate_family(
        ModelSpec(**smk.params.model),
        smk.input.dw,
        smk.wildcards.family,
        smk.input.personas,
        smk.input.questions,
        dict(smk.params.eval_sets),
        smk.output.evals,
        smk.output.overlap,
        smk.output.projection,
        EvalConfig(**ev),
        k=smk.params.k,
        n_questions=smk.params.n_questions,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
