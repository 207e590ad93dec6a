"""Rule tribunal_labels: parse every trace's final answer; correct / incorrect / unparseable."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.tribunal.common import LabelsConfig, StoppingConfig
from interpflow.tribunal.labels import write_labels


def main(smk):
    key = f"tribunal.{smk.wildcards.instance}"
    stopping = from_config(StoppingConfig, smk.params.stopping, f"{key}.stopping").resolved(
        smk.params.test_size
    )
    summary = write_labels(
        generations=smk.input.generations,
        prompts=smk.input.prompts,
        labels=smk.output.labels,
        summary=smk.output.summary,
        cfg=from_config(LabelsConfig, smk.params.labels, f"{key}.labels"),
        caps=(
            (stopping.target_correct, stopping.target_incorrect) if stopping.cap_classes else None
        ),
    )
    print(summary["counts"], summary["by_method"])


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
