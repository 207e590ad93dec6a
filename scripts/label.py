"""Rule labels_*: an LLM judge labels each generation (cached, bounded concurrency)."""

from interpflow.artifacts import log_to
from interpflow.judges import JudgeConfig
from interpflow.labels import label_generations


def main(smk):
    summary = label_generations(
        smk.input.generations,
        smk.output.labels,
        smk.output.summary,
        judge_cfg=JudgeConfig(**smk.params.judge),
        cache_path=smk.params.cache,
        classes=list(smk.params.classes),
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
