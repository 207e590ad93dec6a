"""Rule tribunal_probes: probes per layer x aggregation, implicit-value directions, figure."""

from interpflow.artifacts import log_to
from interpflow.config import from_config
from interpflow.tribunal.common import ProbesConfig
from interpflow.tribunal.probes import fit_tribunal_probes


def main(smk):
    out = smk.output
    metrics = fit_tribunal_probes(
        activations=smk.input.activations,
        labels=smk.input.labels,
        metrics=out.metrics,
        png=out.png,
        table=out.table,
        logits=out.logits,
        directions=out.directions,
        directions_json=out.directions_json,
        provenance=out.provenance,
        layers=list(smk.params.layers),
        aggregations=list(smk.params.aggregations),
        cfg=from_config(
            ProbesConfig, smk.params.probes, f"tribunal.{smk.wildcards.instance}.probes"
        ),
        model_id=smk.params.model_id,
        generations=smk.input.generations,
        control_activations=smk.input.get("control_activations"),  # with probes.control only
        tokens_activations=smk.input.get("tokens_activations"),  # with pre_answer / per_token
        spans=smk.input.get("spans"),
    )
    print(metrics["status"], metrics["reason"] or "", metrics["counts"])


if __name__ == "__main__":
    with log_to(snakemake.log[0]):  # noqa: F821
        main(snakemake)  # noqa: F821
