"""Rule findings: every study instance's findings.json in one table (results/findings.md)."""

from interpflow.artifacts import log_to
from interpflow.findings import gather, summary_text


def main(smk):
    found = gather(
        list(smk.input.findings), smk.output.json, smk.output.md, out_html=smk.output.html
    )
    print(summary_text(found))


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821 (injected by snakemake)
        main(snakemake)  # noqa: F821
