"""Rule inoculation_text_embeddings: embeddings of each prompt and its rephrasings."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.study import InocPrompt
from interpflow.inoculation.text_embeddings import text_embeddings_stage
from interpflow.judges import JudgeConfig


def main(smk):
    emb = smk.params.embeddings
    summary = text_embeddings_stage(
        prompts=[from_config(InocPrompt, p) for p in smk.params.prompts.values()],
        rephrasings=smk.input.rephrasings,
        n_rephrasings=emb["n_rephrasings"],
        embedder=JudgeConfig(**smk.params.embedder),
        cache=smk.params.cache,
        out=smk.output.table,
        out_summary=smk.output.summary,
        batch_size=emb["batch_size"],
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
