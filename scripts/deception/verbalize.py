"""Rule deception_verbalize: verbalizer text (and its graded class) per activation row."""

from interpflow.artifacts import log_to
from interpflow.deception.verbalize import verbalize_activations
from interpflow.judges import JudgeConfig


def main(smk):
    stats = verbalize_activations(
        activations=smk.input.activations,
        generations=smk.input.generations,
        nla=smk.output.nla,
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
