"""Rule inoculation_text_embeddings: embeddings of each prompt and its rephrasings."""

from interpflow.artifacts import log_to
from interpflow.inoculation import InocPrompt, text_embeddings_stage
from interpflow.judges import JudgeConfig


def main(smk):
    emb = smk.params.embeddings
    summary = text_embeddings_stage(
        [InocPrompt(**p) for p in smk.params.prompts.values()],
        smk.input.rephrasings,
        emb["n_rephrasings"],
        JudgeConfig(**smk.params.embedder),
        smk.params.cache,
        smk.output[0],
        batch_size=emb["batch_size"],
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
