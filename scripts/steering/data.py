"""Rule steering_data: the base model answers the question pool under each persona."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec
from interpflow.steering.data import PersonaDataConfig, build_persona_data


def main(smk):
    summary = build_persona_data(
        model=ModelSpec(**smk.params.model),
        personas=smk.input.personas,
        questions=smk.input.questions,
        out_pos=smk.output.pos,
        out_neg=smk.output.neg,
        config=from_config(PersonaDataConfig, smk.params.data, smk.params.key + ".data"),
        threads=smk.threads,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
