"""Rule models_random_init: a random-init copy of a model (same config and tokenizer, seeded
random weights), the control of every probe result on that model."""

from interpflow.artifacts import log_to
from interpflow.random_init import build_random_init


def main(smk):
    summary = build_random_init(out_dir=smk.output[0], **smk.params.model)
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
