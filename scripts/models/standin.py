"""Rule models_standin: a small random model of a preset model's family, depth and chat format
(what a rehearsal runs in its place; interpflow.standin)."""

from interpflow.artifacts import log_to
from interpflow.standin import build_standin


def main(smk):
    summary = build_standin(
        corpus_files=[smk.input.corpus], out_dir=smk.output[0], **smk.params.model
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
