"""Rule deception_verbalize: verbalizer text (and its graded class) per activation row, and the
category x verbalizer-label table beside the category x judge-label one."""

from interpflow.artifacts import log_to
from interpflow.deception.verbalize import run_verbalize
from interpflow.judges import JudgeConfig


def main(smk):
    stats = run_verbalize(
        activations=smk.input.activations,
        generations=smk.input.generations,
        labels=smk.input.labels,
        nla=smk.output.nla,
        table_csv=smk.output.table_csv,
        table_md=smk.output.table_md,
        judge=JudgeConfig(**smk.params.judge),
        grader=JudgeConfig(**smk.params.grader),
        cache=smk.params.cache,
        classes=list(smk.params.classes),
        layer=smk.params.layer,
    )
    print(stats)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
