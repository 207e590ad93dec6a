"""Rule deception_labels: an LLM judge labels each generation (cached, bounded concurrency)."""

from interpflow.artifacts import log_to
from interpflow.deception.labels import label_generations
from interpflow.judges import JudgeConfig


def main(smk):
    summary = label_generations(
        generations=smk.input.generations,
        labels=smk.output.labels,
        summary=smk.output.summary,
        judge=JudgeConfig(**smk.params.judge),
        cache=smk.params.cache,
        classes=list(smk.params.classes),
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
