"""Rule deception_transfer: the bank-trained probe and text baselines read on the bank's
held-out prompts and on each evaluation set (interpflow.deception.transfer.transfer_stage)."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.common import ProbeConfig
from interpflow.deception.transfer import TransferConfig, bank_files, transfer_stage


def main(smk):
    key, inp = f"deception.{smk.wildcards.instance}", smk.input
    cfg = from_config(TransferConfig, smk.params.transfer, f"{key}.transfer")
    m = transfer_stage(
        bank=bank_files(inp),
        probe=inp.probe,
        classes=inp.classes,
        sets=list(cfg.sets),
        captured={"activations": inp.captured, "prompts": inp.captured_prompts},
        probe_cfg=from_config(ProbeConfig, smk.params.probes, f"{key}.probes"),
        cfg=cfg,
        out_metrics=smk.output.metrics,
        out_matrix=smk.output.matrix,
        out_figure=smk.output.figure,
    )
    for name, s in m["sets"].items():
        r = s["readers"]
        print(
            f"{name}: AUROC probe {r['probe']['auroc']:.3f} / lexical {r['lexical']['auroc']:.3f}"
            f" / form {r['form']['auroc']:.3f}; holds: {s['holds']}"
        )


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
