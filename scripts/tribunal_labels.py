"""Rule label_tribunal: parse every trace's final answer; correct / incorrect / unparseable."""

from interpflow.artifacts import log_to
from interpflow.tribunal import write_labels


def main(smk):
    summary = write_labels(
        smk.input.generations,
        smk.input.prompts,
        smk.output.labels,
        smk.output.summary,
        **smk.params.labels,
    )
    print(summary["counts"], summary["by_method"])


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
