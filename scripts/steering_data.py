"""Rule steering_data: the base model answers the question pool under each persona."""

from interpflow.artifacts import log_to
from interpflow.models import ModelSpec
from interpflow.steering import PersonaDataConfig, build_persona_data


def main(smk):
    import torch

    torch.set_num_threads(smk.threads)
    summary = build_persona_data(
        ModelSpec(**smk.params.model),
        smk.input.personas,
        smk.input.questions,
        smk.output.pos,
        smk.output.neg,
        PersonaDataConfig(**smk.params.data),
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
