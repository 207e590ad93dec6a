"""Rule inoculation_eval: completions at step 0 and each checkpoint, default vs training
condition."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.eval import EvalConfig, eval_stage
from interpflow.inoculation.study import InocPrompt
from interpflow.models import ModelSpec


def main(smk):
    n = smk.params.n
    summary = eval_stage(
        run=smk.wildcards.run,
        adapter=smk.input.adapter,
        rephrasings=smk.input.get("rephrasings"),  # mix runs only
        eval_instructions=smk.input.get("eval_instructions"),  # not in experiment 18's runs
        n_eval=n["eval"],
        em_questions=smk.input.get("em_questions"),
        n_em=n["em"],
        id_questions=smk.input.get("id_questions"),  # experiment 18's in-distribution set
        n_id=n.get("id"),
        heldout_instructions=smk.input.get("heldout_instructions"),  # another kind, when given
        n_heldout=n.get("heldout"),
        prompts={k: from_config(InocPrompt, p) for k, p in smk.params.prompts.items()},
        default_system=smk.params.default_system,
        model=ModelSpec(**smk.params.model),
        cfg=from_config(EvalConfig, smk.params.eval, f"inoculation.{smk.wildcards.instance}.eval"),
        threads=smk.threads,
        out=smk.output[0],
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
