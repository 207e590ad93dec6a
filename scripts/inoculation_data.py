"""Rule inoculation_data: the SFT set, a trait-only control set, or the neutral controls."""

from interpflow.artifacts import log_to
from interpflow.inoculation import DatagenConfig, make_dataset
from interpflow.models import ModelSpec


def main(smk):
    spec = smk.params.spec
    gen = dict(smk.params.datagen) | {"system_prompt": spec["system_prompt"] or ""}
    summary = make_dataset(
        smk.output[0],
        smk.wildcards.dataset,
        instructions_path=smk.params.instructions,
        n=spec["n"],
        datagen=DatagenConfig(**gen),
        model=ModelSpec(**smk.params.model),
        external_jsonl=spec["external"],
        threads=smk.threads,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
