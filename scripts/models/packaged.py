"""Rule models_packaged: convert a model that installs from PyPI as a GGUF file to safetensors."""

from interpflow.artifacts import log_to
from interpflow.packaged import convert_gguf


def main(smk):
    summary = convert_gguf(gguf_file=smk.input.gguf, out_dir=smk.output[0])
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
