"""interpflow.atlas: cosines, the null band, the layer convention and each study's directions,
on constructed examples with known answers; the stage's files on the stub (e2e)."""

import json

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import save_file

from interpflow import atlas as A
from interpflow.deception.common import ProbeConfig
from interpflow.models import ModelSpec, chat_prompt, decoder_layers, load_model

D = 576  # SmolLM2's d_model


# --- cosines -------------------------------------------------------------------------------


def test_cosine_known_answers():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(D)
    assert A.cosine(v, 3.0 * v) == pytest.approx(1.0)  # identical up to scale
    assert A.cosine(v, -0.5 * v) == pytest.approx(-1.0)  # sign flip
    e = np.eye(D)
    assert A.cosine(e[0], e[1]) == 0.0  # orthogonal
    assert A.cosine(e[0] + e[1], e[0]) == pytest.approx(1 / np.sqrt(2))
    assert np.isnan(A.cosine(np.zeros(D), v))  # no direction
    with pytest.raises(ValueError, match="dimensions 576 and 3"):
        A.cosine(v, np.ones(3))


def test_cosine_table_only_shared_layers_and_flags_outside_band():
    e = np.eye(8)
    methods = {
        "a": {0: e[0], 1: e[1], 2: e[2]},
        "b": {1: -2 * e[1], 2: e[3], 3: e[4]},  # layer 1: sign flip; layer 2: orthogonal
        "c": {1: np.zeros(8), 2: e[2] + e[3]},  # a zero vector is no direction
    }
    band = {"p95": 0.5, "p99": 0.6}
    t = A.cosine_table(methods, band)
    got = {(r["layer"], r["method_a"], r["method_b"]): r for r in t.iter_rows(named=True)}
    assert set(got) == {(1, "a", "b"), (2, "a", "b"), (2, "a", "c"), (2, "b", "c")}
    assert got[1, "a", "b"]["cosine"] == pytest.approx(-1.0)
    assert got[1, "a", "b"]["outside_null_p99"]
    assert got[2, "a", "b"]["cosine"] == 0.0 and not got[2, "a", "b"]["outside_null_p99"]
    assert got[2, "a", "c"]["cosine"] == pytest.approx(1 / np.sqrt(2))
    mats = A.layer_matrices(methods)
    assert mats[1]["methods"] == ["a", "b"]  # c has no direction at layer 1
    np.testing.assert_allclose(mats[1]["cosine"], [[1, -1], [-1, 1]])
    assert mats[0]["methods"] == ["a"] and mats[3]["methods"] == ["b"]
    summary = {(p["method_a"], p["method_b"]): p for p in A.pair_summary(t)}
    assert summary["a", "b"]["n_layers"] == 2 and summary["a", "b"]["max_abs_layer"] == 1
    assert summary["a", "b"]["n_outside_null_p99"] == 1


# --- the null band ---------------------------------------------------------------------------


def test_null_band_matches_exact_quantiles_and_the_one_over_sqrt_d_scale():
    band = A.null_band(D, n=20000, seed=0)
    assert band["d"] == D and band["scale"] == pytest.approx(1 / 24)
    # simulation vs the exact Beta quantiles: a quantile of 20000 draws is within ~2%
    assert band["p95"] == pytest.approx(band["analytic_p95"], rel=0.03)
    assert band["p99"] == pytest.approx(band["analytic_p99"], rel=0.04)
    # for large d, cos is ~ N(0, 1/d): |cos| quantiles are z / sqrt(d)
    assert band["analytic_p95"] == pytest.approx(1.959964 / np.sqrt(D), rel=0.01)
    assert band["analytic_p99"] == pytest.approx(2.575829 / np.sqrt(D), rel=0.01)
    # a fresh sample exceeds p95 about 5% of the time
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 4000, D))
    cos = np.abs((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))
    assert np.mean(cos > band["p95"]) == pytest.approx(0.05, abs=0.012)
    # the band scales as 1/sqrt(d): a quarter of the dimension, twice the width
    assert A.null_band(D // 4, n=20000, seed=0)["p95"] == pytest.approx(2 * band["p95"], rel=0.04)
    assert A.null_band(D, n=2000, seed=0) == A.null_band(D, n=2000, seed=0)  # seeded
    assert A.analytic_abs_cos_quantile(2, 0.5) == pytest.approx(
        np.cos(np.pi / 4)
    )  # d=2: uniform angle
    with pytest.raises(ValueError, match="d >= 2"):
        A.null_band(1)


# --- layers ----------------------------------------------------------------------------------


def test_layer_conventions():
    assert A.to_block(15, "block") == 15
    assert A.to_block(16, "hidden_states") == 15  # hidden_states[0] is the embedding output
    with pytest.raises(ValueError, match="embedding output"):
        A.to_block(0, "hidden_states")
    with pytest.raises(ValueError, match="unknown layer convention"):
        A.to_block(3, "layer")
    assert set(A.LAYER_CONVENTION.values()) == {"block"}


def test_every_study_reads_the_same_layer_index_as_the_same_block(stub_dir):
    """Deception / tribunal capture while generating (interpflow.capture); RepE and the dW
    shift read every block's output with last_token_states: layer l of each is block l's
    output, hidden_states[l + 1] (below the last block, whose entry is after the final norm)."""
    from interpflow import capture as C
    from interpflow.generate import SamplingConfig
    from interpflow.positions import parse_positions
    from interpflow.steering.baselines import last_token_states

    model, tok = load_model(ModelSpec(str(stub_dir)))
    n_layers = len(decoder_layers(model)[1])
    chats = [chat_prompt(tok, q) for q in ("Hi", "Is this a longer question, or not?")]
    layers = tuple(range(n_layers))
    *_, vectors, _ = C.sample_and_capture(
        model, tok, chats, SamplingConfig(max_new_tokens=1), [-1], layers,
        parse_positions(["last_prompt"]),
    )  # fmt: skip
    states = last_token_states(model, tok, chats).numpy()
    for b, chat in enumerate(chats):
        ids = tok(chat, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        for layer in layers:
            block = A.to_block(layer, "block")
            np.testing.assert_allclose(
                vectors[(layer, "last_prompt")][b], states[b, block], atol=1e-5
            )
            if layer < n_layers - 1:
                hidden = hs[layer + 1][0, -1].numpy()
                np.testing.assert_allclose(
                    states[b, A.to_block(layer + 1, "hidden_states")], hidden, atol=1e-5
                )


# --- each study's directions -----------------------------------------------------------------


def _activations(path, rows):
    """An activations parquet (the capture schema) from (prompt_id, layer, vector) rows."""
    pl.DataFrame(
        {
            "prompt_id": [r[0] for r in rows],
            "layer": [r[1] for r in rows],
            "position": ["last_prompt"] * len(rows),
            "token_index": [0] * len(rows),
            "activation": [r[2].astype(np.float32) for r in rows],
        },
        schema_overrides={"layer": pl.Int16, "activation": pl.Array(pl.Float32, len(rows[0][2]))},
    ).write_parquet(path)


def test_deception_directions_point_to_the_positive_class_from_train_prompts_only(tmp_path):
    """Isotropic noise; at layer 1 the deceptive prompts sit 3 units along e0, at layer 2 along
    e1 (normal and eval_aware differ along e3, symmetric about the deceptive ones, so no
    direction should follow it). The test prompts are deceptive-shifted along e2 instead: a
    direction fitted on them would point along e2."""
    rng = np.random.default_rng(0)
    d, e = 8, np.eye(8)
    classes = ["deceptive", "normal", "eval_aware"]
    ids = [f"p{i:03d}" for i in range(300)]
    label = {p: classes[i % 3] for i, p in enumerate(ids)}
    test = set(ids[240:])
    rows = []
    for layer, axis in ((1, 0), (2, 1)):
        for p in ids:
            v = rng.standard_normal(d)
            if label[p] == "deceptive":
                v += 3 * (e[2] if p in test else e[axis])
            v += {"deceptive": 0, "normal": 2, "eval_aware": -2}[label[p]] * e[3]
            rows.append((p, layer, v))
    _activations(tmp_path / "act.parquet", rows)
    pl.DataFrame({"prompt_id": ids, "category": [label[p] for p in ids]}).write_parquet(
        tmp_path / "labels.parquet"
    )
    # the probes stage's train rows are row indices at probes.layer (rows sorted by prompt)
    np.save(tmp_path / "train.npy", np.arange(240))
    got = A.deception_directions(
        activations=tmp_path / "act.parquet",
        labels=tmp_path / "labels.parquet",
        train_indices=tmp_path / "train.npy",
        probe_cfg=ProbeConfig(layer=1),
        layers=[1, 2],
        positive="deceptive",
    )
    assert set(got) == {"logistic", "diff_means"} and set(got["logistic"]) == {1, 2}
    for kind in got:
        assert A.cosine(got[kind][1], e[0]) > 0.9, kind  # oriented to the positive class
        assert A.cosine(got[kind][2], e[1]) > 0.9, kind
        assert abs(A.cosine(got[kind][1], e[2])) < 0.2, kind  # the test prompts' axis unused
    with pytest.raises(ValueError, match="protocol.positive 'lying'"):
        A.deception_directions(
            activations=tmp_path / "act.parquet",
            labels=tmp_path / "labels.parquet",
            train_indices=tmp_path / "train.npy",
            probe_cfg=ProbeConfig(layer=1),
            layers=[1],
            positive="lying",
        )


def test_linear_direction_of_the_logistic_pipeline_is_in_raw_space():
    """Feature 0 carries the class at a tiny scale, feature 1 is large noise: in standardized
    space the weights favour feature 0; in raw space (w / scale) even more so."""
    from interpflow.probes import make_logreg

    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.5
    X = np.c_[0.01 * (2 * y - 1) + 0.002 * rng.standard_normal(400), 100 * rng.standard_normal(400)]
    pipe = make_logreg(0).fit(X, y)
    w = A.linear_direction(pipe)
    np.testing.assert_allclose(w, pipe.named_steps["clf"].coef_[0] / X.std(0), rtol=1e-6)
    assert w[0] > 0 and A.cosine(w, [1, 0]) > 0.999


def test_tribunal_and_repe_directions_from_their_files(tmp_path):
    rng = np.random.default_rng(0)
    u = rng.standard_normal((3, D)).astype(np.float32)
    save_file(
        {
            "L6.response_mean.direction": u[0],
            "L6.response_mean.mean_correct": u[1],
            "L12.last_response.direction": u[2],
        },
        str(tmp_path / "t.safetensors"),
    )
    (tmp_path / "t.json").write_text(json.dumps({"status": "ok"}))
    got, reason = A.tribunal_directions(tmp_path / "t.safetensors", tmp_path / "t.json")
    assert reason is None and set(got) == {"response_mean", "last_response"}
    assert set(got["response_mean"]) == {6} and set(got["last_response"]) == {12}
    np.testing.assert_array_equal(got["response_mean"][6], u[0])
    (tmp_path / "s.json").write_text(json.dumps({"status": "skipped", "reason": "no traces"}))
    assert A.tribunal_directions(tmp_path / "t.safetensors", tmp_path / "s.json") == (
        {},
        "tribunal probes skipped: no traces",
    )
    rows = rng.standard_normal((4, D)).astype(np.float32)
    save_file({"directions": rows, "pca": -rows}, str(tmp_path / "r.safetensors"))
    got, notes = A.repe_directions(tmp_path / "r.safetensors")
    assert notes == [] and set(got["repe"]) == set(range(4))
    assert A.cosine(got["repe"][2], got["repe_pca"][2]) == pytest.approx(-1.0)
    save_file({"directions": rows}, str(tmp_path / "old.safetensors"))
    got, notes = A.repe_directions(tmp_path / "old.safetensors")
    assert set(got) == {"repe"} and "no 'pca' tensor" in notes[0]


def _one_block_dw(model, block, seed=0, scale=1e-3):
    """A dW on one module of one decoder block."""
    name = f"model.layers.{block}.mlp.down_proj.weight"
    w = dict(model.named_parameters())[name]
    g = torch.Generator().manual_seed(seed)
    return {name: scale * torch.randn(w.shape, generator=g)}


def test_dw_shift_is_zero_below_dw_and_flips_sign_with_alpha(stub_dir, tmp_path):
    from safetensors.torch import save_file as save_torch

    from interpflow.steering.common import EvalConfig

    spec = ModelSpec(str(stub_dir))
    loaded = load_model(spec)
    save_torch(_one_block_dw(loaded[0], 1), str(tmp_path / "dw.safetensors"))
    rows = [{"row_id": str(i), "question": f"Is {i} a good number?", "label": 1} for i in range(5)]
    (tmp_path / "id.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    kw = {
        "model": spec,
        "dw": tmp_path / "dw.safetensors",
        "eval_sets": {"id": str(tmp_path / "id.jsonl")},
        "config": EvalConfig(batch_size=2),
        "loaded": loaded,
    }
    plus, minus = A.dw_shift(alpha=1.0, **kw), A.dw_shift(alpha=-1.0, **kw)
    zero = A.dw_shift(alpha=0.0, **kw)
    assert plus["n_prompts"] == 5 and plus["shift"].shape[0] == len(decoder_layers(loaded[0])[1])
    assert (plus["shift"][0] == 0).all() and plus["norm"][0] == 0  # block 0 precedes dW
    assert (plus["norm"][1:] > 0).all() and (zero["shift"] == 0).all()
    assert plus["base"].shape == (5, *plus["shift"].shape)  # the states without dW
    for layer in range(1, plus["shift"].shape[0]):  # a small dW acts linearly: -dW, -shift
        assert A.cosine(plus["shift"][layer], minus["shift"][layer]) < -0.99
    # the weights are restored: the base model's states are unchanged
    assert A.dw_shift(alpha=1.0, **kw)["shift"] == pytest.approx(plus["shift"])


def test_build_atlas_on_constructed_files(tmp_path):
    """Tribunal's layer-1 direction equals RepE's row 1; RepE's PCA is its flip at every layer:
    the table has +1 and -1 where expected, nothing where a method lacks the layer."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3, D)).astype(np.float32)
    save_file({"directions": rows, "pca": -rows}, str(tmp_path / "r.safetensors"))
    save_file({"L1.response_mean.direction": rows[1]}, str(tmp_path / "t.safetensors"))
    (tmp_path / "t.json").write_text(json.dumps({"status": "ok"}))
    out = {k: tmp_path / f"atlas.{k}" for k in ("csv", "json", "png")}
    summary = A.build_atlas(
        model="m",
        tribunal=[
            {"instance": "t", "directions": tmp_path / "t.safetensors",
             "directions_json": tmp_path / "t.json"}
        ],
        steering=[{"instance": "s", "repe": tmp_path / "r.safetensors", "dw": {}}],
        out_csv=out["csv"], out_json=out["json"], out_png=out["png"], null_n=2000,
    )  # fmt: skip
    t = pl.read_csv(out["csv"])
    assert t.height == 3 + 2  # repe . pca at layers 0-2; tribunal . each at layer 1
    cos = {(r["layer"], r["method_a"], r["method_b"]): r["cosine"] for r in t.iter_rows(named=True)}
    assert cos[1, "tribunal/t:response_mean", "steering/s:repe"] == pytest.approx(1.0)
    assert cos[1, "tribunal/t:response_mean", "steering/s:repe_pca"] == pytest.approx(-1.0)
    assert all(
        cos[layer, "steering/s:repe", "steering/s:repe_pca"] == pytest.approx(-1)
        for layer in range(3)
    )
    saved = json.loads(out["json"].read_text())
    assert saved["null_band"]["d"] == D and saved["methods"]["tribunal/t:response_mean"][
        "layers"
    ] == [1]
    assert saved["layers"]["1"]["methods"] == [
        "tribunal/t:response_mean", "steering/s:repe", "steering/s:repe_pca"
    ]  # fmt: skip
    assert summary["absent"] == [] and out["png"].stat().st_size > 0


# the width the HTML report shows a figure at, about (a laptop screen); wider PNGs shrink to it
REPORT_WIDTH_PX = 1200


def test_atlas_cell_labels_are_readable_at_report_size(tmp_path):
    """The reference run's shape (30 layers x 22 pairs of long method names): each cell's
    number, once the PNG is shrunk to the report's width, is at least 8 px tall."""
    from PIL import Image

    methods = [f"deception/smollm2:m{i}_long_method_name" for i in range(7)]
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1 :]][:22]
    rng = np.random.default_rng(0)
    table = pl.DataFrame(
        [
            {"layer": layer, "method_a": a, "method_b": b, "cosine": float(rng.uniform(-1, 1))}
            for layer in range(30)
            for a, b in pairs
        ]
    )
    band = {"p95": 0.08, "p99": 0.1, "d": 576}
    png = A.figure(table, band, "smollm2", tmp_path / "atlas.png", methods)
    fig = A.atlas_figure(table=table, band=band, model="smollm2", order=methods)
    labels = [t for t in fig.axes[0].texts if t.get_text()]
    assert len(labels) == int((np.abs(table["cosine"].to_numpy()) > band["p99"]).sum())
    sizes = {t.get_fontsize() for t in labels}
    width = Image.open(png).width
    shown = min(sizes) * A.FIGURE_DPI / 72 * min(1.0, REPORT_WIDTH_PX / width)
    assert shown >= 8, f"cell labels {min(sizes)} pt in a {width} px PNG: {shown:.1f} px shown"


# --- the stage on the stub (the session's `snakemake all`) ------------------------------------


@pytest.mark.e2e
def test_atlas_on_stub(all_run):
    """`all` on the default config builds the stub's atlas (deception, tribunal and steering
    all run on it); its cosines are those of the files it read."""
    from safetensors.numpy import load_file

    work, _ = all_run
    res = work / "results/atlas/stub"
    saved = json.loads((res / "atlas.json").read_text())
    table = pl.read_csv(res / "atlas.csv")
    assert (res / "atlas.png").stat().st_size > 0
    methods = saved["methods"]
    assert {"deception/default:logistic", "deception/default:diff_means"} <= set(methods)
    assert methods["deception/default:logistic"]["layers"] == [1, 2, 3]
    families = ["lora", "dora", "pissa", "delora", "oft", "ia3"]
    assert {f"steering/default:shift_{f}" for f in families} <= set(methods)
    # the stub's tribunal never answers: its probes are skipped, and the atlas says so
    assert any(n.startswith("tribunal/default: tribunal probes skipped") for n in saved["absent"])
    # dW adapts blocks 1-2 of 4 (layer slice 30-80%): no shift at block 0
    assert methods["steering/default:shift_lora"]["layers"] == [1, 2, 3]
    assert saved["null_band"]["d"] == 64
    # the anisotropy reference: the eval prompts' mean state without dW, at every layer
    assert methods["steering/default:mean_state"]["layers"] == [0, 1, 2, 3]
    # the table and the per-layer matrices agree; each matrix is symmetric with a unit diagonal
    for r in table.iter_rows(named=True):
        mat = saved["layers"][str(r["layer"])]
        i, j = mat["methods"].index(r["method_a"]), mat["methods"].index(r["method_b"])
        assert (
            r["cosine"] == pytest.approx(mat["cosine"][i][j]) == pytest.approx(mat["cosine"][j][i])
        )
        assert mat["cosine"][i][i] == pytest.approx(1.0)
    # RepE's cosines are those of its file
    repe = load_file(str(work / "results/steering/default/repe/directions.safetensors"))
    if "pca" in repe:
        r = table.filter(
            (pl.col("layer") == 2) & (pl.col("method_b") == "steering/default:repe_pca")
        )
        r = r.filter(pl.col("method_a") == "steering/default:repe")
        assert r["cosine"].item() == pytest.approx(A.cosine(repe["directions"][2], repe["pca"][2]))
