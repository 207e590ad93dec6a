"""Rule deception_probes: logreg + MLP probes on one layer, with metrics, CIs, text baselines
and confusion matrices."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.common import ProbeConfig
from interpflow.deception.probes import train_probes


def main(smk):
    out = smk.output
    metrics = train_probes(
        activations=smk.input.activations,
        labels=smk.input.labels,
        prompts=smk.input.prompts,
        logreg=out.logreg,
        logreg_tensors=out.logreg_tensors,
        logreg_meta=out.logreg_meta,
        mlp=out.mlp,
        mlp_meta=out.mlp_meta,
        classes=out.classes,
        train_indices=out.train,
        test_indices=out.test,
        metrics=out.metrics,
        provenance=out.provenance,
        confusion_logreg=out.confusion_logreg,
        confusion_logreg_csv=out.confusion_logreg_csv,
        confusion_mlp=out.confusion_mlp,
        confusion_mlp_csv=out.confusion_mlp_csv,
        test_proba=out.test_proba,
        cfg=from_config(
            ProbeConfig, smk.params.probes, f"deception.{smk.wildcards.instance}.probes"
        ),
        control_proba=smk.input.get("control_proba"),  # only with probes.control set
        instance=smk.wildcards.instance,
        nla=smk.input.get("nla"),  # only with probes.target verbalizer_label
    )
    for name, m in metrics["baselines"].items():
        print(f"baseline {name}: accuracy={m['accuracy']:.3f} auroc={m.get('auroc')}")
    n = metrics["n_test_prompts"]
    for name, m in metrics["probes"].items():
        print(
            f"{name}: accuracy={m['accuracy']:.3f} auroc={m['auroc']} "
            f"(95% CI {m.get('auroc_ci')}, n={n} test prompts)"
        )
        for base, margin in m["margins"].items():
            print(f"  margin over {base}: auroc {margin['auroc']} CI {margin['auroc_ci']}")
    for warning in metrics["warnings"]:
        print(f"WARNING: {warning}")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
