"""Rule verbalize_*: verbalizer text (and its graded class) per activation row."""

from interpflow.artifacts import log_to
from interpflow.judges import JudgeConfig
from interpflow.labels import verbalize_activations


def main(smk):
    stats = verbalize_activations(
        smk.input.activations,
        smk.input.generations,
        smk.output[0],
        judge_cfg=JudgeConfig(**smk.params.judge),
        grader_cfg=JudgeConfig(**smk.params.grader),
        cache_path=smk.params.cache,
        classes=list(smk.params.classes),
        layer=smk.params.layer,
    )
    print(stats)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
