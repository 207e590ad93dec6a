"""Rule inoculation_report: every figure of the study (each with its CSV) + heuristic
correlations."""

from interpflow.artifacts import log_to
from interpflow.inoculation.report import report_stage


def main(smk):
    inp, names = smk.input, smk.params.figures  # the order of the expanded outputs
    summary = report_stage(
        summary=inp.summary,
        suppression=inp.suppression,
        em=inp.em,
        # none of the four for an instance that trains no inoculation prompt
        heuristics=inp.get("heuristics"),
        embeddings=inp.get("embeddings"),
        angles=inp.get("angles"),
        meta=inp.get("meta"),
        angle_summary=inp.get("angle_summary"),
        matrices=inp.get("matrices"),
        prompt_traits={k: p["trait"] for k, p in smk.params.prompts.items()},
        prompt_groups={k: p.get("group", "") for k, p in smk.params.prompts.items()},
        figures=dict(zip(names, smk.output.figures, strict=True)),
        tables=dict(zip(names, smk.output.tables, strict=True)),
        dataset=smk.output.dataset,
        experiment=smk.wildcards.instance,
        screen=inp.get("screen"),  # the elicitation screen, where enabled
        correlation_out=smk.output.correlation_points,  # pooled by inoculation_pooled
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
