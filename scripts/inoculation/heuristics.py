"""Rule inoculation_heuristics: PH, PPD, gamma/SNR, gradient and embedding heuristics, W,
PCA/SVD, angles."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.inoculation.heuristics import HeuristicsConfig, heuristics_stage
from interpflow.inoculation.study import InocPrompt


def main(smk):
    inp, out = smk.input, smk.output
    summary = heuristics_stage(
        train=inp.train,
        train_tokens=inp.train_tokens,
        neutral=inp.neutral,
        traits=inp.traits,
        trait_names=smk.params.traits,
        selfperp=inp.selfperp,
        text_embeddings=inp.get("text_embeddings"),
        prompts={k: from_config(InocPrompt, p) for k, p in smk.params.prompts.items()},
        cfg=from_config(
            HeuristicsConfig,
            smk.params.heuristics,
            f"inoculation.{smk.wildcards.instance}.heuristics",
        ),
        out_table=out.table,
        out_embeddings=out.embeddings,
        out_angles=out.angles,
        out_angle_summary=out.angle_summary,
        out_matrices=out.matrices,
        out_meta=out.meta,
    )
    print(summary)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
