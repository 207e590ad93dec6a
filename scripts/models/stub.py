"""Rule models_stub: build the tiny offline Qwen2 model and tokenizer."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.stub import StubConfig, build_stub


def main(smk):
    build_stub(
        corpus_files=[smk.input.corpus],
        out_dir=smk.output[0],
        cfg=from_config(StubConfig, smk.params.stub, "stub"),
    )


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
