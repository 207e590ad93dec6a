"""Rule stub_model: build the tiny offline Qwen2 model and tokenizer."""

from interpflow.artifacts import log_to
from interpflow.stub import StubConfig, build_stub


def main(smk):
    build_stub([smk.input.corpus], smk.output[0], StubConfig(**smk.params.stub))


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
