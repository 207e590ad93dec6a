"""Rule steering_eval: alpha-sweep of base + alpha*dW and subspace diagnostics for one family."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec
from interpflow.steering.common import EvalConfig
from interpflow.steering.eval import DiagnosticsConfig, evaluate_family


def main(smk):
    key = smk.params.key
    summary = evaluate_family(
        model=ModelSpec(**smk.params.model),
        dw=smk.input.dw,
        family=smk.wildcards.family,
        personas=smk.input.personas,
        questions=smk.input.questions,
        eval_sets=dict(smk.params.eval_sets),
        out_evals=smk.output.evals,
        out_overlap=smk.output.overlap,
        out_projection=smk.output.projection,
        config=from_config(EvalConfig, smk.params.eval, key + ".eval"),
        diagnostics=from_config(DiagnosticsConfig, smk.params.diagnostics, key + ".diagnostics"),
        threads=smk.threads,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
