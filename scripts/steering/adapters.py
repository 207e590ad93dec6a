"""Rule steering_adapters: theta+ and theta- of one family (same init), then dW and its norms."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.models import ModelSpec
from interpflow.steering.adapters import PersonaAdapterConfig, PersonaTrainConfig, train_pair


def main(smk):
    key = smk.params.key
    summary = train_pair(
        model=ModelSpec(**smk.params.model),
        pos_data=smk.input.pos,
        neg_data=smk.input.neg,
        out_pos=smk.output.pos,
        out_neg=smk.output.neg,
        out_dw=smk.output.dw,
        out_norms=smk.output.norms,
        adapter=from_config(
            PersonaAdapterConfig,
            {**smk.params.adapter, "family": smk.wildcards.family},
            key + ".adapter",
        ),
        train=from_config(PersonaTrainConfig, smk.params.train, key + ".train"),
        threads=smk.threads,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
