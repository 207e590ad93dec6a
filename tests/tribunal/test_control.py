"""Stage tribunal_control (interpflow.tribunal.control): traces re-read by a control model,
and the probes' paired margin over the same probe on its activations."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq

from interpflow.models import ModelSpec, chat_prompt, load_tokenizer
from interpflow.tribunal.common import CaptureSettings, ProbesConfig
from interpflow.tribunal.control import capture_control
from interpflow.tribunal.probes import fit_tribunal_probes
from tribunal.test_probes import OUTPUTS, _synthetic


def test_control_rereads_every_trace_and_the_probes_score_it(stub_dir, tmp_path):
    act, labels, _ = _synthetic(tmp_path)
    spec = ModelSpec(str(stub_dir), dtype="float32", device="cpu")
    tok = load_tokenizer(spec)
    ids = labels["prompt_id"].to_list()
    gens = pl.DataFrame(
        {
            "prompt_id": ids,
            # the same text for every trace: the control's activations cannot tell them apart
            "chat_prompt": [chat_prompt(tok, "What is 2 + 1?")] * len(ids),
            "response": ["2 + 1 = 3. The answer is 3."] * len(ids),
        }
    )
    gens.write_parquet(tmp_path / "generations.parquet")
    control = tmp_path / "control.parquet"
    summary = capture_control(
        generations=tmp_path / "generations.parquet",
        activations=control,
        provenance=tmp_path / "control.provenance.json",
        model=spec,
        capture=CaptureSettings(layers=(1, 2), aggregations=("response_mean", "last_response")),
        batch_size=8,
        model_id="stub",
    )
    table = pq.read_table(control).to_pandas()
    assert summary["n_traces"] == len(ids) and table.shape[0] == len(ids) * 2 * 2
    assert set(table["prompt_id"]) == set(ids)

    out = tmp_path / "probes"
    out.mkdir()
    labels.write_parquet(out / "labels.parquet")
    m = fit_tribunal_probes(
        activations=act,
        labels=out / "labels.parquet",
        **{k: out / name for k, name in OUTPUTS.items()},
        layers=[1, 2],
        aggregations=["response_mean"],
        cfg=ProbesConfig(n_bootstrap=50, control="stub-random"),
        control_activations=control,
    )
    assert m["control"] == "stub-random"
    for p in m["probes"].values():
        c = p["controls"]["control"]
        # the synthetic activations carry the class, the stub's re-reading does not
        assert c["auroc"] == 0.5 and c["margin"]["auroc_ci"][0] > 0.3
        assert abs(c["margin"]["auroc"] - (p["metrics"]["auroc"] - c["auroc"])) < 1e-12
