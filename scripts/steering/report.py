"""Rule steering_report: deltas vs alpha = 0 with 95% CIs, figures with their tables."""

from interpflow.artifacts import log_to
from interpflow.steering.report import steering_report


def main(smk):
    out = smk.output
    result = steering_report(
        evals=[*smk.input.evals, *smk.input.baselines],
        overlaps=list(smk.input.overlaps),
        out_summary=out.summary,
        out_summary_csv=out.summary_csv,
        out_json=out.json,
        out_alpha=out.alpha,
        out_alpha_csv=out.alpha_csv,
        out_bars=out.bars,
        out_bars_csv=out.bars_csv,
        out_pmass=out.pmass,
        out_pmass_csv=out.pmass_csv,
        out_diagnostics=out.diagnostics,
        out_projection=out.projection,
    )
    print(result)


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
