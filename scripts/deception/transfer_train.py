"""Rule deception_transfer_train: probes trained for transfer (pooled leave-one-set-out,
several layers, response positions), each read on the evaluation sets it was not trained on
(interpflow.deception.transfer_train.transfer_train_stage)."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.deception.common import ProbeConfig
from interpflow.deception.transfer import TransferConfig, bank_files
from interpflow.deception.transfer_train import transfer_train_stage


def main(smk):
    key, inp = f"deception.{smk.wildcards.instance}", smk.input
    m = transfer_train_stage(
        bank=bank_files(inp),
        classes=inp.classes,
        captured={"activations": inp.captured, "prompts": inp.captured_prompts},
        capture_layers=list(smk.params.capture["layers"]),
        capture_positions=list(smk.params.capture["positions"]),
        probe_cfg=from_config(ProbeConfig, smk.params.probes, f"{key}.probes"),
        cfg=from_config(TransferConfig, smk.params.transfer, f"{key}.transfer"),
        out_metrics=smk.output.metrics,
        out_table=smk.output.table,
        out_figure=smk.output.figure,
        where=f"{key}.transfer.train",
    )
    for name, v in m["variants"].items():
        for test, s in (v.get("tests") or {}).items():
            margins = " / ".join(f"{b} {x['auroc']:+.3f}" for b, x in s["margins"].items())
            print(f"{name} -> {test}: AUROC {s['readers']['probe']['auroc']:.3f}; {margins}")
        if "skipped" in v:
            print(f"{name}: skipped ({v['skipped']})")


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
