"""interpflow.steering.baselines: RepE states, the mean-difference and PCA readers, residual
steering."""

import json

import polars as pl
import pytest
import torch

from interpflow.models import decoder_layers, load_model
from interpflow.steering.baselines import (
    ResidualSteerer,
    last_token_states,
    pca_directions,
    repe_additions,
)


def _added_per_block(model, tok, additions, alpha):
    """What the steerer adds to each block's output ([L, T, d]): a hook registered before it
    sees the block's own output, one after it the steered output."""
    _, layers = decoder_layers(model)
    seen = {"pre": [], "post": []}
    pre = [lay.register_forward_hook(lambda _m, _a, o: seen["pre"].append(o)) for lay in layers]
    steer = ResidualSteerer(model, additions)
    steer.alpha = alpha
    post = [lay.register_forward_hook(lambda _m, _a, o: seen["post"].append(o)) for lay in layers]
    ids = tok("hi there", return_tensors="pt").input_ids
    with torch.no_grad():
        model(ids)
    for h in pre + post:
        h.remove()
    steer.remove()
    return torch.stack([b - a for a, b in zip(seen["pre"], seen["post"])])[:, 0]


def test_repeng_form_adds_the_unit_direction_at_every_block(spec):
    """repeng's ControlModel: block l's output + coeff·u_l (u_l unit), at every layer and
    position; at α = 1 exactly the unit vector (the cumulative form added d_l − d_{l−1})."""
    model, tok = load_model(spec)
    n = len(decoder_layers(model)[1])
    d = 3.0 * torch.randn(n, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    add = repe_additions(directions=d, form="repeng")["repe"]
    got = _added_per_block(model, tok, add, 1.0)
    unit = d / d.norm(dim=-1, keepdim=True)
    assert torch.allclose(got, unit[:, None].expand_as(got), atol=1e-5)
    assert torch.allclose(got.norm(dim=-1), torch.ones(got.shape[:2]), atol=1e-5)
    cum = _added_per_block(model, tok, repe_additions(directions=d, form="cumulative")["repe"], 0.7)
    assert torch.allclose(cum.cumsum(0), 0.7 * d[:, None].expand_as(cum), atol=1e-4)


def test_repe_additions_known_values():
    """d = (3, 4), (0, 2), (0, 0); u the PCA directions. repeng: α=1 adds d_l/‖d_l‖ (0 where
    d_l = 0) and u_l; cumulative: increments whose running sums are d_l and ‖d_l‖·u_l."""
    d = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    u = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    rp = repe_additions(directions=d, pca=u, form="repeng")
    assert torch.equal(rp["repe"], torch.tensor([[0.6, 0.8], [0.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(rp["repe_pca"], u)
    cu = repe_additions(directions=d, pca=u, form="cumulative")
    assert torch.allclose(cu["repe"], torch.tensor([[3.0, 4.0], [-3.0, -2.0], [0.0, -2.0]]))
    assert torch.allclose(cu["repe_pca"].cumsum(0), torch.tensor([[5.0, 0], [1.2, 1.6], [0, 0]]))
    assert set(repe_additions(directions=d, form="repeng")) == {"repe"}
    with pytest.raises(ValueError, match="RepE form 'sum'"):
        repe_additions(directions=d, form="sum")


def test_residual_steerer_is_removed_cleanly(spec):
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


# --- the PCA reader (repeng pca_diff), issue 13 item 15 -----------------------------------------


def _paired(v, n=40, d=16, layers=3, noise=0.05, seed=0, offset=None):
    """Pairs whose differences are s_i·v (+ offset) + small noise, s_i in [0.5, 3]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, layers, d, generator=g)
    s = 0.5 + 2.5 * torch.rand(n, 1, 1, generator=g)
    diff = s * v + noise * torch.randn(n, layers, d, generator=g)
    if offset is not None:
        diff = diff + offset
    return base + diff, base


def _unit(x):
    return x / x.norm()


def test_pca_recovers_a_known_direction_oriented_to_the_mean_difference():
    v = _unit(torch.arange(1.0, 17.0) * (-1) ** torch.arange(16))
    hp, hn = _paired(v)
    out = pca_directions(hp, hn)
    assert out["pca"].shape == (3, 16) and out["pca"].dtype == torch.float32
    assert torch.allclose(out["pca"].norm(dim=-1), torch.ones(3), atol=1e-6)
    cos = out["pca"] @ v
    assert torch.all(cos > 0.99), cos  # +v, not -v: the positive persona projects higher
    assert torch.all(out["explained"] > 0.9)
    assert torch.all(out["cos_mean_diff"] > 0.99)


def test_pca_orientation_follows_the_mean_difference_not_the_principal_axis():
    """Differences = 2·e1 (constant) + t_i·w, t_i symmetric around 0, w at 45° to e1: PC1 is
    ±w; the mean difference 2·e1 orients it to +w (w·e1 > 0)."""
    d = 8
    e1 = torch.zeros(d)
    e1[0] = 1.0
    w = _unit(torch.tensor([1.0, 1.0] + [0.0] * (d - 2)))
    t = torch.linspace(-3, 3, 30)[:, None, None]
    hn = torch.zeros(30, 2, d)
    hp = (2.0 * e1 + t * w).expand(30, 2, d)
    u = pca_directions(hp, hn)["pca"]
    assert torch.allclose(u, w.expand(2, d), atol=1e-5)
    # the mirrored spread (t -> -t) is the same data: the same orientation
    mirrored = (2.0 * e1 - t * w).expand(30, 2, d)
    assert torch.allclose(pca_directions(mirrored, hn)["pca"], u, atol=1e-5)


def test_flipping_the_sign_convention_cannot_flip_the_orientation(monkeypatch):
    """Swapping the personas negates the reader exactly as it negates the mean difference, and
    an SVD returning the opposite sign changes nothing: the orientation comes from the data."""
    v = _unit(torch.randn(16, generator=torch.Generator().manual_seed(3)))
    hp, hn = _paired(v, seed=1)
    u = pca_directions(hp, hn)["pca"]
    swapped = pca_directions(hn, hp)
    assert torch.allclose(swapped["pca"], -u, atol=1e-6)
    assert torch.all(swapped["cos_mean_diff"] > 0.99)  # still agrees with ITS mean difference
    svd = torch.linalg.svd

    def flipped_svd(x, full_matrices=True):
        uu, s, vh = svd(x, full_matrices=full_matrices)
        return -uu, s, -vh

    monkeypatch.setattr(torch.linalg, "svd", flipped_svd)
    assert torch.allclose(pca_directions(hp, hn)["pca"], u, atol=1e-6)


def test_pca_edge_cases_and_bad_input():
    v = _unit(torch.ones(4))
    hp = torch.zeros(5, 1, 4) + v  # every difference the same: no variance, no PC
    out = pca_directions(hp, torch.zeros(5, 1, 4))
    assert torch.allclose(out["pca"][0], v, atol=1e-6) and torch.isnan(out["explained"][0])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        pca_directions(hp[:1], hp[:1])
    with pytest.raises(ValueError, match="one shape"):
        pca_directions(hp, hp[:3])


def test_repe_stores_both_readers_and_sweeps_both(spec, tmp_path):
    """directions.safetensors: ``directions`` (unchanged) and ``pca`` ([L, d], unit norm,
    u·d > 0); the α-sweep has methods repe and repe_pca, equal at α = 0 (the base model)."""
    from safetensors.torch import load_file

    from interpflow.steering.baselines import eval_repe, fit_repe
    from interpflow.steering.common import EvalConfig

    loaded = load_model(spec)
    res = "resources/steering"
    fit_repe(
        model=spec,
        loaded=loaded,
        personas=f"{res}/personas/honesty.json",
        questions=f"{res}/questions.txt",
        out_directions=tmp_path / "d.safetensors",
        out_norms=tmp_path / "d.json",
        n_questions=2,
    )
    stored = load_file(str(tmp_path / "d.safetensors"))
    n_layers = len(decoder_layers(loaded[0])[1])
    assert (
        stored["directions"].shape
        == stored["pca"].shape
        == (n_layers, loaded[0].config.hidden_size)
    )
    assert torch.allclose(stored["pca"].norm(dim=-1), torch.ones(n_layers), atol=1e-5)
    assert torch.all((stored["pca"] * stored["directions"]).sum(-1) > 0)
    rows = eval_repe(
        model=spec,
        loaded=loaded,
        directions=tmp_path / "d.safetensors",
        eval_sets={"id": f"{res}/id_eval.jsonl"},
        out_evals=tmp_path / "repe.parquet",
        config=EvalConfig(alphas=(-1.0, 0.0, 1.0), n_rows=3),
    )
    assert sorted(rows["method"].unique().to_list()) == ["repe", "repe_pca"]
    prov = json.loads((tmp_path / "repe.parquet.provenance.json").read_text())
    assert prov["repe_form"] == "repeng"  # the default: seed 004's repeng ControlVector
    at0 = [
        rows.filter((pl.col("method") == m) & (pl.col("alpha") == 0.0)).sort("row_id")["logratio"]
        for m in ("repe", "repe_pca")
    ]
    assert at0[0].to_list() == at0[1].to_list()
    at1 = [
        rows.filter((pl.col("method") == m) & (pl.col("alpha") == 1.0)).sort("row_id")["logratio"]
        for m in ("repe", "repe_pca")
    ]
    assert at1[0].to_list() != at1[1].to_list()


def test_unpaired_personas_are_named(tmp_path):
    from interpflow.steering.baselines import fit_repe

    f = tmp_path / "p.json"
    f.write_text('{"positive": ["a", "b"], "negative": ["c"]}')
    with pytest.raises(ValueError, match=r"p.json: the PCA reader pairs .* 2 positive and 1"):
        fit_repe(
            model=None,
            loaded=(None, None),
            personas=f,
            questions="resources/steering/questions.txt",
            out_directions=tmp_path / "d.safetensors",
            out_norms=tmp_path / "d.json",
            pairs="all",
        )


def test_repe_personas_first_pair_is_the_seeds():
    from interpflow.steering.baselines import repe_personas

    pos, neg = ["p0", "p1", "p2"], ["n0", "n1", "n2"]
    assert repe_personas(pos, neg, "first", "f") == (["p0"], ["n0"])
    assert repe_personas(pos, neg, "all", "f") == (pos, neg)
    assert repe_personas(pos, ["n0"], "first", "f") == (["p0"], ["n0"])  # unpaired: fine
    with pytest.raises(ValueError, match="one of"):
        repe_personas(pos, neg, "some", "f")


def test_repe_fit_on_the_first_pair_reads_only_that_pair(spec, tmp_path):
    """Known answer: RepE fitted with ``pairs="first"`` on a three-pair file gives exactly the
    directions of ``pairs="all"`` on a file holding only that first pair, and differs from the
    three-pair fit."""
    from safetensors.torch import load_file

    from interpflow.steering.baselines import fit_repe

    loaded = load_model(spec)
    three = tmp_path / "three.json"
    three.write_text(
        json.dumps(
            {
                "positive": ["Be kind.", "Be warm.", "Be nice."],
                "negative": ["Be rude.", "Be cold.", "Be mean."],
            }
        )
    )
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"positive": ["Be kind."], "negative": ["Be rude."]}))
    got = {}
    for name, path, pairs in (
        ("first", three, "first"),
        ("one", one, "all"),
        ("all", three, "all"),
    ):
        fit_repe(
            model=spec,
            loaded=loaded,
            personas=path,
            questions="resources/steering/questions.txt",
            out_directions=tmp_path / f"{name}.safetensors",
            out_norms=tmp_path / f"{name}.json",
            n_questions=3,
            pairs=pairs,
        )
        got[name] = load_file(str(tmp_path / f"{name}.safetensors"))
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        assert meta["n_pos"] == (9 if name == "all" else 3) and meta["persona_pairs"] == pairs
    for key in ("directions", "pca"):
        assert torch.equal(got["first"][key], got["one"][key])
        assert not torch.allclose(got["first"][key], got["all"][key])


# --- engineered prompts, AxBench's design (issue 13 item 15) -----------------------------------


def test_shipped_engineered_prompts_follow_the_design():
    from interpflow.steering.baselines import load_engineered

    for axis, names in (
        ("honesty", ["engineered_honest", "engineered_dishonest"]),
        ("agreement", ["engineered_agree", "engineered_disagree"]),
    ):
        prompts = load_engineered(f"resources/steering/engineered/{axis}.json")
        assert list(prompts) == names
        # AxBench: "even if ... unrelated", with an in-context example
        assert all("even when the question seems unrelated" in p for p in prompts.values())
        assert all("For example" in p for p in prompts.values())


def test_engineered_prompts_as_system_prompt_and_before_the_question(spec, tmp_path, monkeypatch):
    """Each engineered prompt is scored twice: as the system prompt (seed 004; variant <name>)
    and in the user turn before the question (AxBench: '<prompt>\\n\\nQuestion: <q>'; variant
    <name>_user), both without any other system prompt."""
    from interpflow.steering import baselines
    from interpflow.steering.common import YesNoScorer

    eng = tmp_path / "eng.json"
    eng.write_text('{"prompts": {"eng_pos": {"concept": "c", "prompt": "Be P."}}}')
    named = tmp_path / "named.json"
    named.write_text('{"none": null}')
    calls = []
    real = YesNoScorer.score

    def spy(self, questions, system=None):
        calls.append((list(questions), system))
        return real(self, questions, system)

    monkeypatch.setattr(YesNoScorer, "score", spy)
    cfg = baselines.EvalConfig(n_rows=2)
    rows = baselines.eval_prompt_baselines(
        model=spec,
        prompts=named,
        engineered=eng,
        eval_sets={"id": "resources/steering/id_eval.jsonl"},
        out_evals=tmp_path / "p.parquet",
        config=cfg,
    )
    assert rows["variant"].unique(maintain_order=True).to_list() == [
        "none",
        "eng_pos",
        "eng_pos_user",
    ]
    (q_none, s_none), (q_sys, s_sys), (q_user, s_user) = calls
    assert s_none is None and s_sys == "Be P." and s_user is None
    assert q_sys == q_none and q_user == [f"Be P.\n\nQuestion: {q}" for q in q_none]
    assert (rows.filter(pl.col("variant") == "eng_pos_user")["alpha"] == 0.0).all()
    named.write_text('{"none": null, "eng_pos_user": "x"}')
    with pytest.raises(ValueError, match=r"eng.json: prompt names \['eng_pos_user'\]"):
        baselines.eval_prompt_baselines(
            model=spec,
            prompts=named,
            engineered=eng,
            eval_sets={"id": "resources/steering/id_eval.jsonl"},
            out_evals=tmp_path / "p.parquet",
            config=cfg,
        )
    eng.write_text('{"prompts": {"eng_pos": {"prompt": "Be P."}}}')
    with pytest.raises(ValueError, match=r"eng.json: prompts.eng_pos needs a non-empty 'concept'"):
        baselines.load_engineered(eng)
