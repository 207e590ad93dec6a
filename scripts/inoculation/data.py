"""Rule inoculation_data: the SFT set, a trait-only control set, or the neutral controls."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.data import DatagenConfig, make_dataset
from interpflow.models import ModelSpec


def main(smk):
    spec = smk.params.spec  # this dataset's size, source and datagen system prompt
    datagen = {
        **smk.params.datagen,
        "system_prompt": spec["system_prompt"] or "",
        "completion_template": spec["completion_template"],
    }
    summary = make_dataset(
        dataset=smk.wildcards.dataset,
        out=smk.output[0],
        external_jsonl=smk.input.get("external"),
        instructions=smk.input.get("instructions"),
        n=spec["n"],
        datagen=from_config(
            DatagenConfig, datagen, f"inoculation.{smk.wildcards.instance}.datagen"
        ),
        model=ModelSpec(**smk.params.model),
        threads=smk.threads,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
