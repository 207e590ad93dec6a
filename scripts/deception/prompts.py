"""Rule deception_prompts: read, deduplicate and id the prompt banks."""

from interpflow.artifacts import log_to
from interpflow.deception.prompts import build_prompt_table


def main(smk):
    summary = build_prompt_table(
        banks=list(smk.input.banks), table=smk.output.table, summary=smk.output.summary
    )
    print(
        f"{summary['n_lines']} lines -> {summary['n_prompts']} prompts "
        f"({summary['n_duplicates_removed']} duplicates removed, "
        f"{summary['n_cross_category_conflicts']} cross-category conflicts dropped)"
    )


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
