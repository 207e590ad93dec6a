"""Rule inoculation_heuristics: PH, PPD, gamma/SNR, gradient and embedding heuristics, W, PCA/SVD, angles."""

from pathlib import Path

from interpflow.artifacts import log_to
from interpflow.inoculation import InocPrompt, heuristics_stage


def main(smk):
    summary = heuristics_stage(
        Path(smk.input.tokens).parent,
        smk.params.traits,
        {k: InocPrompt(**p) for k, p in smk.params.prompts.items()},
        Path(smk.output.table).parent,
        text_embeddings_path=smk.input.get("text_embeddings"),
        gradient=smk.params.heuristics["gradient"],
        n_components=smk.params.heuristics["n_components"],
        seed=smk.params.heuristics["seed"],
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
