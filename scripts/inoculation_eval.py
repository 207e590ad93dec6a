"""Rule inoculation_eval: completions at step 0 and each checkpoint, default vs training condition."""

from interpflow.artifacts import log_to
from interpflow.inoculation import EvalConfig, InocPrompt, eval_stage
from interpflow.models import ModelSpec


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    summary = eval_stage(
        smk.wildcards.run,
        smk.input.adapter,
        smk.params.sets,
        smk.params.n,
        {k: InocPrompt(**p) for k, p in smk.params.prompts.items()},
        smk.input.rephrasings,
        smk.params.default_system,
        ModelSpec(**smk.params.model),
        EvalConfig(**smk.params.eval),
        smk.output[0],
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
