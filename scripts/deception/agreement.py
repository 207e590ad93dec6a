"""Rule deception_agreement: Cohen's kappa between the label judges on the generations and
each judge's accuracy on the shipped gold slice."""

from interpflow.artifacts import log_to
from interpflow.deception.agreement import judge_agreement
from interpflow.judges import JudgeConfig


def main(smk):
    result = judge_agreement(
        generations=smk.input.generations,
        judges=[JudgeConfig(**j) for j in smk.params.judges],
        gold=smk.input.gold,
        cache=smk.params.cache,
        classes=list(smk.params.classes),
        out=smk.output.agreement,
    )
    for name, g in result["gold"]["accuracy"].items():
        print(f"{name}: gold accuracy {g['accuracy']:.3f} {g['accuracy_ci']} (n={g['n']})")
    for pair, k in result["agreement"].items():
        print(f"{pair}: kappa {k['kappa']} {k['kappa_ci']} (n={k['n']})")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
