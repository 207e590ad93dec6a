"""Rule atlas: one model's direction atlas (the deception and tribunal probes' directions,
RepE's mean difference and PCA, the residual shift of alpha·dW) as per-layer cosines beside
the null band of random directions."""

from interpflow.artifacts import log_to
from interpflow.atlas import build_atlas


def main(smk):
    plan = smk.params.plan
    summary = build_atlas(
        model=smk.wildcards.model,
        deception=plan["deception"],
        tribunal=plan["tribunal"],
        steering=plan["steering"],
        out_csv=smk.output.csv,
        out_json=smk.output.json,
        out_png=smk.output.png,
    )
    print(f"null band: {summary['null_band']}")
    for note in summary["absent"]:
        print(f"absent: {note}")
    for p in summary["pairs"]:
        print(p)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821 (injected by snakemake)
        main(snakemake)  # noqa: F821
