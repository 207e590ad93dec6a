import json

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from interpflow.adapters import AdapterConfig, TrainConfig, train_adapter
from interpflow.models import ModelSpec, decoder_layers, load_model
from interpflow.steering import (
    EVAL_SCHEMA,
    EvalConfig,
    ResidualSteerer,
    WeightSteerer,
    YesNoScorer,
    _overlap,
    compute_dw,
    eval_weight_steering,
    last_token_states,
    load_eval_set,
    load_personas,
    steering_report,
    summarize,
)

RES = "resources/steering"


@pytest.fixture(scope="module")
def spec(stub_dir):
    return ModelSpec(str(stub_dir))


def test_shipped_resources_parse():
    pos, neg = load_personas(f"{RES}/personas/honesty.json")
    assert len(pos) == len(neg) == 5
    dd = load_eval_set("dilemmas", f"{RES}/dilemmas.jsonl")
    assert dd.height == 24 and set(dd["label"].to_list()) == {-1, 1}
    assert "Would you take this action?" in dd["question"][0]
    assert load_eval_set("id", f"{RES}/id_eval.jsonl").height == 12


def test_bad_eval_rows_name_file_and_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "honesty_label": 1}\n{"question": "r", "honesty_label": 0}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: row 2: honesty_label"):
        load_eval_set("x", bad)
    bad.write_text('{"question": "q", "honesty_label": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_eval_set("x", bad)
    with pytest.raises(FileNotFoundError, match="steering.axis"):
        load_personas(tmp_path / "nope.json")


def test_batched_scores_equal_single(spec):
    model, tok = load_model(spec)
    qs = ["Is it fine to lie?", "Would you return a wallet you found on a long and empty street?"]
    batched = YesNoScorer(model, tok, batch_size=8).score(qs)
    single = [YesNoScorer(model, tok, batch_size=1).score([q]) for q in qs]
    for i in range(2):
        assert batched[0][i] == pytest.approx(single[i][0][0], abs=1e-5)
        assert batched[1][i] == pytest.approx(single[i][1][0], abs=1e-5)
    assert np.all(batched[0] < 0) and np.all(batched[1] < 0)


def test_weight_steerer_applies_and_restores(spec):
    model, _ = load_model(spec)
    name = "model.layers.1.self_attn.q_proj.weight"
    w0 = dict(model.named_parameters())[name].detach().clone()
    dw = {name: torch.randn_like(w0)}
    steer = WeightSteerer(model, dw)
    steer.apply(-0.5)
    assert torch.allclose(dict(model.named_parameters())[name], w0 - 0.5 * dw[name])
    steer.apply(2.0)  # from the original, not cumulative
    assert torch.allclose(dict(model.named_parameters())[name], w0 + 2.0 * dw[name])
    steer.restore()
    assert torch.equal(dict(model.named_parameters())[name], w0)
    with pytest.raises(ValueError, match="lacks"):
        WeightSteerer(model, {"model.nope.weight": w0})


def test_residual_steerer_shifts_first_block_by_alpha_d(spec):
    model, tok = load_model(spec)
    _, layers = decoder_layers(model)
    d = torch.randn(len(layers), model.config.hidden_size)
    chats = [tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)]
    h0 = last_token_states(model, tok, chats)
    steer = ResidualSteerer(model, d)
    steer.alpha = 0.7
    h1 = last_token_states(model, tok, chats)
    assert torch.allclose(h1[0, 0] - h0[0, 0], 0.7 * d[0], atol=1e-5)
    assert not torch.allclose(h1[0, -1], h0[0, -1])
    steer.remove()
    assert torch.allclose(last_token_states(model, tok, chats), h0)


def test_last_token_states_match_unpadded_hidden_states(spec):
    model, tok = load_model(spec)
    chats = [
        tok.apply_chat_template([{"role": "user", "content": c}], tokenize=False)
        for c in ("hi", "a much longer question about honesty and lies")
    ]
    states = last_token_states(model, tok, chats)  # left-padded batch
    n_layers = states.shape[1]
    for b, chat in enumerate(chats):
        ids = tok(chat, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        for layer in range(n_layers - 1):  # the last entry of hidden_states is after the norm
            assert torch.allclose(states[b, layer], hs[layer + 1][0, -1], atol=1e-5)


@pytest.fixture(scope="module")
def pair(spec, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pair")
    rows = {
        "pos": ["Yes, I would tell the truth."] * 6,
        "neg": ["No, I would hide it and lie."] * 6,
    }
    cfg = AdapterConfig(family="lora", rank=2, alpha=4, layer_slice=(0.3, 0.8))
    train = TrainConfig(lr=5e-2, batch_size=3, grad_accum=1)
    for b, answers in rows.items():
        pl.DataFrame(
            {
                "system": [None] * 6,
                "user": [f"Would you be honest about {i}?" for i in range(6)],
                "assistant": answers,
            }
        ).write_parquet(tmp / f"{b}.parquet")
        train_adapter(spec, tmp / f"{b}.parquet", tmp / b, cfg, train, log=lambda m: None)
    return tmp


def test_compute_dw_is_merged_difference_with_norms(spec, pair):
    summary = compute_dw(
        spec, pair / "pos", pair / "neg", pair / "dw.safetensors", pair / "norms.json"
    )
    dw = load_file(str(pair / "dw.safetensors"))
    assert set(dw) == set(summary["modules"]) and len(dw) == 2 * 7  # 2 layers x 7 modules
    assert all(".layers.1." in k or ".layers.2." in k for k in dw)
    norms = json.loads((pair / "norms.json").read_text())["modules"]
    assert all(norms[k] == pytest.approx(float(v.norm())) for k, v in dw.items())
    # dW equals merged(pos) - merged(neg) = B+A+ s - B-A- s for LoRA
    from peft import PeftModel

    k = "model.layers.1.self_attn.q_proj.weight"
    deltas = []
    for b in ("pos", "neg"):
        base, _ = load_model(spec)
        m = PeftModel.from_pretrained(base, str(pair / b))
        deltas.append(
            m.base_model.model.model.layers[1].self_attn.q_proj.get_delta_weight("default")
        )
    assert torch.allclose(dw[k], deltas[0] - deltas[1], atol=1e-6)
    # same adapter on both sides -> dW is exactly zero
    compute_dw(spec, pair / "pos", pair / "pos", pair / "zero.safetensors", pair / "zero.json")
    assert all(
        float(v.abs().max()) == 0 for v in load_file(str(pair / "zero.safetensors")).values()
    )


def test_weight_sweep_alpha0_is_base_and_alpha_moves_scores(spec, pair):
    compute_dw(spec, pair / "pos", pair / "neg", pair / "dw.safetensors", pair / "norms.json")
    evals = {"id": f"{RES}/id_eval.jsonl"}
    cfg = EvalConfig(alphas=(-1.0, 0.0, 1.0), n_rows=6)
    df = eval_weight_steering(
        spec, pair / "dw.safetensors", "lora", evals, pair / "ev.parquet", cfg
    )
    assert df.schema == pl.Schema(EVAL_SCHEMA) and df.height == 18
    model, tok = load_model(spec)
    qs = load_eval_set("id", evals["id"], 6)["question"].to_list()
    ly, ln = YesNoScorer(model, tok).score(qs)
    base = df.filter(pl.col("alpha") == 0.0)
    assert np.allclose(base["logratio"].to_numpy(), ly - ln, atol=1e-5)
    assert np.allclose(base["pmass"].to_numpy(), np.exp(ly) + np.exp(ln), atol=1e-6)
    plus = df.filter(pl.col("alpha") == 1.0)["logratio"].to_numpy()
    assert not np.allclose(plus, ly - ln)
    signed = df["logratio_signed"].to_numpy()
    assert np.allclose(signed, df["logratio"].to_numpy() * df["label"].to_numpy())


def _rows(method, variant, alpha, values, labels=None, eval_set="dilemmas"):
    n = len(values)
    labels = labels or [1] * n
    lr = np.asarray(values, dtype=float)
    return pl.DataFrame(
        {
            "method": [method] * n,
            "variant": [variant] * n,
            "alpha": [alpha] * n,
            "eval_set": [eval_set] * n,
            "row_id": [str(i) for i in range(n)],
            "label": labels,
            "logp_yes": lr / 2,
            "logp_no": -lr / 2,
            "logratio": lr,
            "logratio_signed": lr * np.asarray(labels),
            "pmass": [0.5] * n,
        },
        schema=EVAL_SCHEMA,
    )


def test_summarize_deltas_are_paired_with_ci():
    base = [0.0, 1.0, 2.0, 3.0]
    df = pl.concat(
        [
            _rows("weight", "lora", 0.0, base),
            _rows(
                "weight",
                "lora",
                1.0,
                [b + d for b, d in zip(base, [0.1, 0.3, 0.1, 0.3], strict=True)],
            ),
            _rows("prompt", "none", 0.0, [5.0, 5.0, 5.0, 5.0]),
            _rows("prompt", "honest", 0.0, [6.0, 6.0, 6.0, 6.0]),
        ]
    )
    s = summarize(df)
    row = s.filter((pl.col("variant") == "lora") & (pl.col("alpha") == 1.0)).row(0, named=True)
    diffs = np.array([0.1, 0.3, 0.1, 0.3])
    assert row["delta"] == pytest.approx(0.2)
    half = 1.96 * diffs.std(ddof=1) / 2
    assert row["delta_lo"] == pytest.approx(0.2 - half) and row["delta_hi"] == pytest.approx(
        0.2 + half
    )
    prompt = s.filter(pl.col("variant") == "honest").row(0, named=True)
    assert prompt["delta"] == pytest.approx(1.0)  # vs the 'none' prompt, not vs weight rows


def test_report_writes_figures_tables_and_signs(tmp_path):
    parts = []
    for fam, slope in (("lora", 0.5), ("delora", -0.2)):
        for a in (-1.0, 0.0, 1.0):
            parts.append(_rows("weight", fam, a, [slope * a + x for x in (0.0, 0.2, 0.4)]))
    parts += [_rows("repe", "all_layers", a, [0.1 * a, 0.0, 0.1]) for a in (-1.0, 0.0, 1.0)]
    parts += [
        _rows("prompt", p, 0.0, [v, v, v]) for p, v in (("none", 0.0), ("simple_honest", -0.3))
    ]
    paths = []
    for i, p in enumerate(parts):
        paths.append(tmp_path / f"{i}.parquet")
        p.write_parquet(paths[-1])
    res = steering_report(paths, tmp_path / "out")
    signs = res["deltas_at_alpha_pm1"]["dilemmas"]
    assert (
        signs["weight:lora"]["+1"]["delta"] == pytest.approx(0.5)
        and signs["weight:lora"]["+1"]["sign"] == 1
    )
    assert signs["weight:delora"]["+1"]["sign"] == -1 and signs["weight:delora"]["-1"]["sign"] == 1
    for name in ("alpha_vs_score", "baselines_vs_weight", "pmass"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 1000
        assert (tmp_path / "out" / f"{name}.csv").exists()
    bars = pl.read_csv(tmp_path / "out/baselines_vs_weight.csv")
    assert set(bars["label"]) == {
        "weight:lora",
        "weight:delora",
        "repe:all_layers",
        "prompt:simple_honest",
    }


def test_overlap_bounds():
    mat = torch.randn(6, 4)
    full = torch.eye(6)
    assert _overlap(full, mat, "out") == pytest.approx(1.0)
    e0 = torch.zeros(6, 1)
    e0[0] = 1
    only_row0 = torch.zeros(6, 4)
    only_row0[1] = 1.0
    assert _overlap(e0, only_row0, "out") == pytest.approx(0.0)
    assert _overlap(torch.eye(4), mat, "in") == pytest.approx(1.0)


def test_hub_eval_set_without_datasets_names_the_key(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError("no datasets")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match="steering.eval.sets.dilemmas"):
        load_eval_set("dilemmas", "hf:wassname/daily_dilemmas-self-honesty:honesty_eval:train")
