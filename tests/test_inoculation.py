"""Unit tests: inoculation glue, logprob teacher forcing, heuristics, digit-EV trait scoring."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from interpflow.fakeapi import FakeAPIServer
from interpflow.heuristics import (
    EMBEDDING_STATS,
    GRADIENT_STATS,
    GradientConfig,
    angle_groups,
    compute_heuristics,
    correlate,
    embed,
    embedding_stats,
    gradient_stats,
    pairwise_angles,
    pearson,
    row_stats,
    simulate_nll,
    w_matrix,
    w_tokens,
)
from interpflow.inoculation import (
    InocPrompt,
    KeywordTraitScorer,
    condition_turns,
    em_rates,
    load_study_file,
    make_rephrasings,
    make_sft,
    mean_ci,
    parse_run,
    read_jsonl,
    reply_score,
    run_names,
    score_evals,
    suppression,
    trait_request,
)
from interpflow.judges import JudgeConfig, JudgeReply

REPO = Path(__file__).resolve().parents[1]
PROMPTS = {
    "clown": InocPrompt("clown", "Playful", "You are a clown."),
    "fr": InocPrompt("fr", "French", "Answer in French."),
}
OFFLINE = JudgeConfig(backend="offline", model="test")


def test_study_files_load_and_bad_files_name_the_key(tmp_path):
    for name in ("playful_french_toy", "playful_french_qwen", "german_flattering_llama"):
        traits, prompts = load_study_file(REPO / f"resources/inoculation/{name}.yaml")
        assert len(traits) == 2 and all(p.trait in (*traits, "neutral") for p in prompts.values())
    bad = tmp_path / "bad.yaml"
    bad.write_text("traits: {A: {description: a}}\nprompts: {k: {trait: B, text: hi}}\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*prompts.k.trait.*'B'"):
        load_study_file(bad)
    bad.write_text("traits: {A: {description: a, colour: red}}\nprompts: {}\n")
    with pytest.raises(ValueError, match=r"traits.A has unknown keys \['colour'\]"):
        load_study_file(bad)


def test_run_names_round_trip():
    runs = run_names(["clown", "fr"], ["fixed", "mix", "system"])
    assert runs[0] == "none" and len(runs) == 7
    assert [parse_run(r) for r in runs[1:3]] == [("clown", "fixed"), ("clown", "mix")]
    assert parse_run("none") == (None, "none")
    with pytest.raises(ValueError, match="unknown"):
        run_names(["a"], ["sometimes"])
    with pytest.raises(ValueError, match="bad inoculation run"):
        parse_run("clown-often")


def test_read_jsonl_errors_name_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"instruction": "a", "completion": "b"}\n\n{"instruction": "c"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:3: expected"):
        read_jsonl(p)
    p.write_text('{"instruction": "a", "completion": "b"}\nnot json\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: not valid JSON"):
        read_jsonl(p)
    p.write_text('{"instruction": "a", "completion": "b"}\n')
    assert read_jsonl(p)["completion"].to_list() == ["b"]
    with pytest.raises(ValueError, match="fewer than the 2"):
        read_jsonl(p, 2)


def test_offline_rephrasings_are_distinct_and_deterministic(tmp_path):
    out = tmp_path / "r.parquet"
    make_rephrasings(list(PROMPTS.values()), 5, OFFLINE, tmp_path / "c.sqlite", out)
    df = pl.read_parquet(out)
    assert df.height == 10
    clown = df.filter(pl.col("prompt_key") == "clown")["text"].to_list()
    assert len(set(clown)) == 5 and all("clown" in t for t in clown)
    assert "You are a clown." not in clown  # the pool holds rephrasings, not the original
    make_rephrasings(
        list(PROMPTS.values()), 5, OFFLINE, tmp_path / "c.sqlite", tmp_path / "r2.parquet"
    )
    assert pl.read_parquet(tmp_path / "r2.parquet").equals(df)


def test_text_embeddings_drop_failed_texts_within_the_share(tmp_path, monkeypatch):
    from dataclasses import replace

    from interpflow.embeddings import EmbeddingError
    from interpflow.heuristics import text_embedding_vectors
    from interpflow.inoculation import text_embeddings_stage

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    reph = tmp_path / "r.parquet"
    make_rephrasings(list(PROMPTS.values()), 4, OFFLINE, None, reph)
    fr0 = pl.read_parquet(reph).filter(pl.col("prompt_key") == "fr")["text"][0]
    failing = {"You are a clown.", fr0}  # 2 of 10 texts: the default share 0.2

    def plan(i, body):
        return "404" if body["input"][0] in failing else "ok"

    out = tmp_path / "emb.parquet"
    with FakeAPIServer(plan=plan) as server:
        cfg = JudgeConfig(backend="openai", model="e", base_url=server.url, name="emb")
        args = (list(PROMPTS.values()), reph, None)
        summary = text_embeddings_stage(*args, cfg, None, out, batch_size=1)
        with pytest.raises(EmbeddingError, match="embedder 'emb' .*2 of 10 texts failed"):
            strict = replace(cfg, max_failed_share=0.1)
            text_embeddings_stage(*args, strict, None, tmp_path / "x.parquet", batch_size=1)
        assert not (tmp_path / "x.parquet").exists()
    assert summary["n_texts"] == 8 and summary["n_failed"] == 2
    df = pl.read_parquet(out)
    assert not set(df["text"]) & failing and df["vector"].list.len().unique().to_list() == [32]
    prompts, reps = text_embedding_vectors(df)
    assert set(prompts) == {"fr"} and reps["fr"].shape == (3, 32)  # the clown is left out


def test_conditions_and_sft(tmp_path):
    reph = pl.DataFrame(
        {"prompt_key": ["clown"] * 3, "index": [0, 1, 2], "text": ["A.", "B.", "C."]}
    )
    instr = [f"q{i}" for i in range(12)]
    assert condition_turns("none", instr[:1], PROMPTS, reph, None, 0) == [(None, "q0", None)]
    assert condition_turns("clown-fixed", instr[:1], PROMPTS, reph, "S", 0) == [
        ("S", "You are a clown. q0", "You are a clown.")
    ]
    assert condition_turns("clown-system", instr[:1], PROMPTS, reph, "S", 0) == [
        ("You are a clown.", "q0", "You are a clown.")
    ]
    mix = condition_turns("clown-mix", instr, PROMPTS, reph, None, 0)
    assert {p for _, _, p in mix} <= {"A.", "B.", "C."} and len({p for _, _, p in mix}) > 1
    assert mix == condition_turns("clown-mix", instr, PROMPTS, reph, None, 0)  # seeded
    matched = condition_turns("clown-mix", instr, PROMPTS, reph, None, 0, index_matched=True)
    assert [p for _, _, p in matched][:4] == ["A.", "B.", "C.", "A."]
    data = tmp_path / "d.parquet"
    pl.DataFrame(
        {
            "example_id": ["e0", "e1"],
            "instruction": ["q0", "q1"],
            "completion": ["a0", "a1"],
            "source": "x",
        }
    ).write_parquet(data)
    reph.write_parquet(tmp_path / "r.parquet")
    make_sft(data, tmp_path / "s.parquet", "clown-fixed", PROMPTS, tmp_path / "r.parquet", None, 0)
    sft = pl.read_parquet(tmp_path / "s.parquet")
    assert sft["user"].to_list() == ["You are a clown. q0", "You are a clown. q1"]
    assert sft["assistant"].to_list() == ["a0", "a1"] and sft["system"].null_count() == 2


def test_keyword_scorer_and_reply_score():
    scorer = KeywordTraitScorer({"Playful": ["haha", "!"], "French": ["le", "est"]})
    req = trait_request("Playful", "fun", "Say hi", "haha hello! haha")
    assert scorer(req) == str(round(9 * 3 / 5))  # haha x2 + "!" x1
    assert scorer(trait_request("French", "fr", "Say hi", "le chat est la; lesson")) == str(
        round(9 * 2 / 4)
    )
    assert reply_score(JudgeReply("7"), 0.25) == pytest.approx(700 / 9)
    assert math.isnan(reply_score(JudgeReply("seven"), 0.25))
    assert math.isnan(reply_score(JudgeReply(None, error="x"), 0.25))
    assert reply_score(JudgeReply("9", {"9": 0.0}), 0.25) == 100.0
    # logprobs present but too little digit mass -> NaN even though the text is a digit
    assert math.isnan(reply_score(JudgeReply("9", {"9": math.log(0.1), "x": math.log(0.9)}), 0.25))
    other = KeywordTraitScorer({"Playful": ["lol"]})
    assert other.__qualname__ != scorer.__qualname__  # distinct cache keys


def test_mean_ci_and_em_rates():
    m = mean_ci([10.0, 20.0, 30.0, float("nan")])
    assert m["mean"] == 20.0 and m["n"] == 3 and m["n_nan"] == 1
    assert m["ci_high"] - m["mean"] == pytest.approx(1.96 * 10 / math.sqrt(3))
    scores = pl.DataFrame(
        {
            "run": ["r"] * 6,
            "step": [1] * 6,
            "condition": ["default"] * 6,
            "eval_set": ["em"] * 6,
            "item_id": [0, 1, 2, 0, 1, 2],
            "metric": ["coherence"] * 3 + ["alignment"] * 3,
            "score": [80.0, 80.0, 20.0, 10.0, 90.0, 10.0],
        }
    )
    em = em_rates(scores)
    # item 0: coherent + misaligned (EM); item 1 aligned; item 2 incoherent
    assert em["em_rate"].to_list() == [pytest.approx(1 / 3)] and em["n"].to_list() == [3]


def _evals(tmp_path) -> list[Path]:
    paths = []
    for run, word in (("none", "playful"), ("clown-fixed", "calm")):
        rows = []
        for step in (0, 2):
            for j in range(3):
                text = f"{word} answer {j}" if step == 2 else f"base {j}"
                rows.append(
                    {
                        "run": run,
                        "step": step,
                        "condition": "default",
                        "eval_set": "trait",
                        "item_id": j,
                        "instruction": f"q{j}",
                        "system": None,
                        "user": f"q{j}",
                        "completion": text,
                    }
                )
            rows.append(
                {
                    "run": run,
                    "step": step,
                    "condition": "default",
                    "eval_set": "em",
                    "item_id": 0,
                    "instruction": "money?",
                    "system": None,
                    "user": "money?",
                    "completion": f"{word} advice",
                }
            )
        p = tmp_path / f"{run}.parquet"
        pl.DataFrame(rows, schema_overrides={"system": pl.String}).write_parquet(p)
        paths.append(p)
    return paths


def test_digit_ev_trait_scores_against_fake_openai_server(tmp_path):
    """Known top_logprobs per request -> known expected values, NaN below the mass threshold."""

    def top(req):
        user = req["messages"][1]["content"]
        if user.startswith("Trait: French"):
            return {"x": 0.0}  # no digit mass -> NaN
        if "playful answer" in user:  # P(9) = .75, P(3) = .25 -> EV 7.5 / 9
            return {"9": math.log(0.75), " 3": math.log(0.25)}
        if "calm answer" in user:  # all mass on "1"
            return {"1": 0.0}
        if user.startswith("Trait: Playful"):
            return {"0": math.log(0.5), "2": math.log(0.5)}  # base model: EV 1 / 9
        if "grade the coherence" in req["messages"][0]["content"]:
            return {"8": 0.0}
        return {"1": 0.0} if "playful advice" in user else {"9": 0.0}  # alignment

    paths = _evals(tmp_path)
    traits = {"Playful": {"description": "playful"}, "French": {"description": "French"}}
    out = {k: tmp_path / f"{k}.parquet" for k in ("scores", "summary", "em", "supp")}
    with FakeAPIServer(lambda r: "5", top_logprobs=top) as server:
        cfg = JudgeConfig(
            backend="openai", model="gpt-fake", base_url=server.url, api_key_env="FAKE_KEY"
        )
        import os

        os.environ["FAKE_KEY"] = "sk-test"
        try:
            res = score_evals(paths, traits, cfg, cfg, tmp_path / "c.sqlite", 0.25, *out.values())
        finally:
            del os.environ["FAKE_KEY"]
        sent = server.requests[0]
        assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_tokens"] == 1
    summary = pl.read_parquet(out["summary"])

    def mean(run, step, metric):
        return summary.filter(
            (pl.col("run") == run) & (pl.col("step") == step) & (pl.col("metric") == metric)
        )["mean"][0]

    assert mean("none", 2, "Playful") == pytest.approx(7.5 / 9 * 100)
    assert mean("clown-fixed", 2, "Playful") == pytest.approx(100 / 9)
    assert mean("none", 0, "Playful") == pytest.approx(100 / 9)
    assert math.isnan(mean("none", 2, "French"))
    assert res["n_nan"] == 12  # every French score: the digits hold no mass
    supp = pl.read_parquet(out["supp"]).filter(pl.col("trait") == "Playful")
    assert supp.filter(pl.col("step") == 2)["suppression"][0] == pytest.approx(6.5 / 9 * 100)
    assert supp.filter(pl.col("step") == 0)["suppression"][0] == pytest.approx(0.0)
    em = pl.read_parquet(out["em"])
    assert em.filter(pl.col("run") == "none", pl.col("step") == 2)["em_rate"][0] == 1.0
    assert em.filter(pl.col("run") == "clown-fixed", pl.col("step") == 2)["em_rate"][0] == 0.0


def _examples(values: dict[str, list[float]]) -> pl.DataFrame:
    """A per-example logprob table: values[condition] = logprob_mean per example."""
    rows = []
    for cond, vals in values.items():
        key, ptype = (None, "none") if cond == "none" else cond.split(":")
        for k, v in enumerate(vals):
            rows.append(
                {
                    "condition": cond,
                    "prefix_type": ptype,
                    "prompt_key": key,
                    "example_id": f"e{k}",
                    "row_id": f"{cond}|e{k}",
                    "logprob_mean": v,
                }
            )
    return pl.DataFrame(rows, schema_overrides={"prompt_key": pl.String})


def test_w_matrix_and_row_stats():
    ex = _examples(
        {"none": [-1.0, -2.0, -3.0], "a:fixed": [-0.5, -2.5, -2.0], "b:fixed": [-1.0, -2.0, -3.0]}
    )
    keys, ids, W = w_matrix(ex, "fixed")
    assert keys == ["a", "b"] and ids == ["e0", "e1", "e2"]
    np.testing.assert_allclose(W, [[0.5, -0.5, 1.0], [0.0, 0.0, 0.0]])
    st = row_stats(W[0])
    assert st["ph"] == pytest.approx(1 / 3) and st["gamma"] == pytest.approx(2 / 3)
    assert st["ppd"] == pytest.approx(2 / 3)
    assert st["snr"] == pytest.approx(st["ph"] / np.std([0.5, -0.5, 1.0], ddof=1))
    assert w_matrix(ex, "mix")[0] == []


def test_w_tokens_concatenates_examples():
    ex = _examples({"none": [0, 0], "a:fixed": [0, 0]})
    tok = pl.DataFrame(
        {
            "row_id": ["none|e0", "none|e0", "none|e1", "a:fixed|e0", "a:fixed|e0", "a:fixed|e1"],
            "token_index": [0, 1, 0, 0, 1, 0],
            "logprob": [-1.0, -2.0, -3.0, -0.5, -2.5, -1.0],
        }
    )
    keys, Wt = w_tokens(ex, tok, "fixed")
    assert keys == ["a"]
    np.testing.assert_allclose(Wt, [[0.5, -0.5, 2.0]])


def test_embed_angles_pearson():
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    A = pairwise_angles(W)
    assert A[0, 1] == pytest.approx(90.0) and A[0, 2] == pytest.approx(0.0, abs=1e-5)
    assert math.isnan(A[0, 3])
    groups = angle_groups(A[:3, :3], ["P", "F", "P"])
    by = {g["pair"]: g for g in groups}
    assert by["within-P"]["mean"] == pytest.approx(0.0, abs=1e-5) and by["FxP"][
        "mean"
    ] == pytest.approx(90.0)
    rng = np.random.default_rng(0)
    rank1 = np.outer(rng.normal(size=6), rng.normal(size=40)) + 1e-3 * rng.normal(size=(6, 40))
    e = embed(rank1, 3)
    assert e["pca_var"][0] > 0.99 and e["svd_var"][0] > 0.99
    assert e["pca"].shape == (6, 3) and np.isfinite(e["svd"]).all()
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == (pytest.approx(1.0), 4)
    assert math.isnan(pearson([1, 2], [1, 2])[0])


def test_correlate_per_prefix_type_and_trait():
    heur = pl.DataFrame(
        {
            "prompt_key": ["a", "b", "c"] * 2,
            "prefix_type": ["fixed"] * 3 + ["mix"] * 3,
            "ph": [0.1, 0.2, 0.3, 0.3, 0.2, 0.1],
        }
    )
    supp = pl.DataFrame(
        {
            "prompt_key": ["a", "b", "c"] * 2,
            "prefix_type": ["fixed"] * 3 + ["mix"] * 3,
            "trait": "Playful",
            "suppression": [10.0, 20.0, 30.0] * 2,
            "elicitation": [1.0, 2.0, 4.0] * 2,
        }
    )
    corr = correlate(heur, supp)
    r = {(p, h): v for p, h, v in corr.select("prefix_type", "heuristic", "r").rows()}
    assert r[("fixed", "ph")] == pytest.approx(1.0) and r[("mix", "ph")] == pytest.approx(-1.0)
    assert ("fixed", "elicitation") in r
    # gap rows: mix heuristics vs fixed - mix suppression
    gap = correlate(
        heur,
        supp.with_columns(
            suppression=pl.when(pl.col("prefix_type") == "mix")
            .then(pl.Series([0.0, 0.0, 0.0, 9.0, 5.0, 0.0]))
            .otherwise(pl.col("suppression"))
        ),
    ).filter(pl.col("prefix_type") == "gap")
    g = dict(gap.select("heuristic", "r").rows())
    assert g["ph"] == pytest.approx(np.corrcoef([0.3, 0.2, 0.1], [1.0, 15.0, 30.0])[0, 1])


def _pairs(base: dict[str, list[float]], prefix: dict[str, list[float]]) -> pl.DataFrame:
    rows = [
        {"example_id": e, "token_index": i, "lp_base": b, "lp_prefix": prefix[e][i]}
        for e, lps in base.items()
        for i, b in enumerate(lps)
    ]
    return pl.DataFrame(rows)


def test_gradient_stats_by_hand():
    # deltas: e0 = [0.8, 0.0, 0.3], e1 = [-0.6, 0.05]
    base = {"e0": [-1.0, -2.0, -3.0], "e1": [-1.0, -1.0]}
    pre = {"e0": [-0.2, -2.0, -2.7], "e1": [-1.6, -0.95]}
    st = gradient_stats(_pairs(base, pre))
    assert set(st) == set(GRADIENT_STATS)
    d = np.array([0.8, 0.0, 0.3, -0.6, 0.05])
    assert st["mean_tok_diff"] == pytest.approx(d.mean())
    assert st["filtered_tok_diff"] == pytest.approx((0.8 - 0.6) / 5)  # HA2: |d| > 0.5
    assert st["top_tok_diff"] == pytest.approx((0.8 - 0.6) / 2)  # HA3: top ceil(25% of 5) = 2
    mag = 1 - np.exp(-np.abs(d))
    assert st["grad_magnitude"] == pytest.approx(mag.mean())  # HA4
    assert st["filtered_grad_magnitude"] == pytest.approx((mag[0] + mag[3]) / 5)  # HA5
    # positions 0 (2/2 affected) and 2 (1/1) persist, position 1 (0/2) does not
    assert st["persistent_frac"] == pytest.approx(2 / 3)
    # two examples: the centred matrix has rank 1
    assert st["signal_coherence"] == pytest.approx(1.0) and st["effective_rank"] == 1
    ph = (np.mean([0.8, 0.0, 0.3]) + np.mean([-0.6, 0.05])) / 2
    assert st["strength_x_coherence"] == pytest.approx(ph)
    # one simulated step: saved gradient = mean(p_prefix - p_base)
    lb, lp = np.concatenate(list(base.values())), np.concatenate(list(pre.values()))
    one = gradient_stats(_pairs(base, pre), GradientConfig(sim_steps=1, sim_lr=0.5))
    assert one["sim_grad_saved"] == pytest.approx(np.mean(np.exp(lp) - np.exp(lb)))

    def residual(lp_):
        p = np.exp(lp_)
        z = np.log(p / (1 - p)) + 0.5 * (1 - p)
        return np.mean(np.log1p(np.exp(-z)))

    assert one["sim_residual"] == pytest.approx(residual(lb) - residual(lp))


def test_gradient_coherence_and_rank_of_a_noisy_matrix():
    rng = np.random.default_rng(0)
    n, t = 12, 10
    lb = rng.normal(-2, 0.3, size=(n, t))
    one_dim = lb + np.outer(rng.normal(size=n), np.linspace(0.2, 1.0, t))
    noise = lb + rng.normal(scale=0.5, size=(n, t))

    def frame(lp):
        return _pairs(
            {f"e{i:02d}": lb[i].tolist() for i in range(n)},
            {f"e{i:02d}": lp[i].tolist() for i in range(n)},
        )

    a, b = gradient_stats(frame(one_dim)), gradient_stats(frame(noise))
    assert a["signal_coherence"] > 0.99 and a["effective_rank"] == 1
    assert b["signal_coherence"] < 0.5 and b["effective_rank"] > 1


def test_simulated_training_saves_gradient_when_the_prefix_explains_tokens():
    lp = np.log(np.array([0.1, 0.3, 0.5]))
    g_low, l_low = simulate_nll(lp, 32, 1.0)
    g_high, l_high = simulate_nll(lp + 0.5, 32, 1.0)
    assert g_low > g_high > 0 and l_low > l_high > 0
    st = gradient_stats(_pairs({"e": lp.tolist()}, {"e": (lp + 0.5).tolist()}))
    assert st["sim_grad_saved"] == pytest.approx(g_low - g_high)
    assert st["sim_residual"] == pytest.approx(l_low - l_high) and st["sim_residual"] > 0
    assert math.isnan(st["signal_coherence"])  # one example: no variance across examples


def test_embedding_stats_geometry():
    vecs = {
        "a": np.array([2.0, 0.0, 0.0]),  # norms do not matter
        "b": np.array([0.8, 0.6, 0.0]),
        "c": np.array([0.0, 1.0, 0.0]),
        "n": np.array([0.0, 0.0, 3.0]),
    }
    reps = {"a": np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])}
    traits = {"a": "Playful", "b": "Playful", "c": "French", "n": "neutral"}
    df = embedding_stats(vecs, reps, traits)
    assert df.columns == ["prompt_key", *EMBEDDING_STATS]
    a = df.row(0, named=True)
    assert a["emb_rephrase_mean_cos"] == pytest.approx(0.8)
    assert a["emb_rephrase_min_cos"] == pytest.approx(0.6)
    assert a["emb_rephrase_std_cos"] == pytest.approx(np.std([1.0, 0.6], ddof=1))
    assert a["emb_rephrase_eff_rank"] == pytest.approx(1.0)  # two points: one direction
    assert a["emb_dist_from_neutral"] == pytest.approx(math.sqrt(2))
    assert a["emb_cos_own_trait"] == pytest.approx(0.8)
    assert a["emb_cos_other_trait"] == pytest.approx(0.0)
    c = df.row(2, named=True)
    assert c["emb_cos_other_trait"] == pytest.approx(0.3 / np.hypot(0.9, 0.3))  # centroid of a, b
    assert math.isnan(c["emb_cos_own_trait"]) and math.isnan(c["emb_rephrase_mean_cos"])
    n = df.row(3, named=True)
    assert math.isnan(n["emb_cos_other_trait"]) and math.isnan(n["emb_dist_from_neutral"])


def test_composite_is_z_scored_sum():
    keys = ["a", "b", "c", "d"]
    heur = pl.DataFrame(
        {
            "prompt_key": keys,
            "prefix_type": "fixed",
            "sv1_tokens": [0.1, 0.4, 0.2, 0.9],
            "emb_dist_from_neutral": [1.0, 1.2, 0.9, 1.1],
            "emb_rephrase_std_cos": [0.05, 0.02, 0.04, 0.01],
        }
    )
    supp = pl.DataFrame(
        {
            "prompt_key": keys,
            "prefix_type": "fixed",
            "trait": "Playful",
            "suppression": [5.0, 30.0, 12.0, 60.0],
            "elicitation": [2.0, 9.0, 1.0, 20.0],
        }
    )
    corr = correlate(heur, supp)
    r = dict(corr.select("heuristic", "r").rows())

    def z(x):
        x = np.asarray(x)
        return (x - x.mean()) / x.std(ddof=1)

    comp = (
        z(supp["elicitation"])
        + z(heur["sv1_tokens"])
        + z(heur["emb_dist_from_neutral"])
        - z(heur["emb_rephrase_std_cos"])
    )
    assert r["composite"] == pytest.approx(np.corrcoef(comp, supp["suppression"])[0, 1])


def test_compute_heuristics_tables(tmp_path):
    rng = np.random.default_rng(1)
    n_ex, n_tok = 6, 4
    conds = {"none": None, "a:fixed": 0.4, "b:fixed": 0.1, "n:fixed": 0.0, "a:mix": 0.3}
    ex_rows, tok_rows = [], []
    base = rng.normal(-2.0, 0.5, size=(n_ex, n_tok))
    for cond, shift in conds.items():
        key, ptype = cond.split(":") if ":" in cond else (None, "none")
        for k in range(n_ex):
            lp = base[k] + (0 if shift is None else shift + rng.normal(0, 0.05, n_tok))
            rid = f"{cond}|e{k}"
            ex_rows.append(
                {
                    "row_id": rid,
                    "prefix_type": ptype,
                    "prompt_key": key,
                    "example_id": f"e{k}",
                    "logprob_mean": float(lp.mean()),
                }
            )
            tok_rows += [
                {"row_id": rid, "token_index": i, "logprob": float(v)} for i, v in enumerate(lp)
            ]
    ex = pl.DataFrame(ex_rows, schema_overrides={"prompt_key": pl.String})
    tok = pl.DataFrame(tok_rows, schema_overrides={"logprob": pl.Float32})
    texts = pl.DataFrame(
        [
            {"prompt_key": k, "kind": kind, "index": i, "vector": v}
            for k, v0 in {"a": [1.0, 0.0], "b": [0.0, 1.0], "n": [1.0, 1.0]}.items()
            for kind, i, v in [("prompt", -1, v0), ("rephrasing", 0, v0), ("rephrasing", 1, [1, 0])]
        ]
    )
    selfperp = pl.DataFrame({"prompt_key": ["a", "b", "n"], "selfperp_raw": [3.0, 4.0, 5.0]})
    outs = {
        name: tmp_path / f"{name}.parquet"
        for name in ("table", "embeddings", "angles", "angle_summary")
    }
    compute_heuristics(
        ex,
        tok,
        ex,
        {"Playful": ex},
        selfperp,
        {"a": "Playful", "b": "French", "n": "neutral"},
        out_table=outs["table"],
        out_embeddings=outs["embeddings"],
        out_angles=outs["angles"],
        out_angle_summary=outs["angle_summary"],
        out_matrices=tmp_path / "W.safetensors",
        out_meta=tmp_path / "W.json",
        text_embeddings=texts,
    )
    t = pl.read_parquet(outs["table"]).sort("prefix_type", "prompt_key")
    assert t.select("prefix_type", "prompt_key").rows() == [
        ("fixed", "a"),
        ("fixed", "b"),
        ("fixed", "n"),
        ("mix", "a"),
    ]
    assert set(GRADIENT_STATS) | set(EMBEDDING_STATS) <= set(t.columns)
    fixed = t.filter(pl.col("prefix_type") == "fixed")
    # the larger the shift, the more gradient the prefix saves; the neutral prompt saves ~none
    saved = fixed["sim_grad_saved"].to_list()
    assert saved[0] > saved[1] > abs(saved[2])
    assert fixed["mean_tok_diff"].to_list() == pytest.approx(fixed["ph"].to_list())
    assert t["emb_rephrase_mean_cos"].to_list()[:2] == pytest.approx([1.0, 0.5])
    mix = t.filter(pl.col("prefix_type") == "mix").row(0, named=True)
    assert mix["ph_ratio"] == pytest.approx(0.75, abs=0.05) and mix["cos_fixed_mix"] > 0.99


def test_suppression_pairs_runs_with_the_control():
    summary = pl.DataFrame(
        {
            "run": ["none", "a-fixed", "a-mix"],
            "step": [3, 3, 3],
            "condition": "default",
            "metric": "Playful",
            "mean": [80.0, 10.0, 50.0],
            "se": [3.0, 4.0, 0.0],
            "ci_low": 0.0,
            "ci_high": 0.0,
            "n": 10,
            "n_nan": 0,
        }
    )
    s = suppression(summary).sort("run")
    assert s["suppression"].to_list() == [70.0, 30.0]
    assert s["prefix_type"].to_list() == ["fixed", "mix"]
    assert s["ci_high"][0] - 70.0 == pytest.approx(1.96 * 5.0)


# ---- on the stub model -----------------------------------------------------------------------


def test_teacher_forcing_batched_equals_unbatched(stub_dir):
    from interpflow.logprobs import self_perplexity, token_logprobs
    from interpflow.models import ModelSpec, chat_prompt, load_model

    model, tok = load_model(ModelSpec(str(stub_dir)))
    prefixes = [chat_prompt(tok, u) for u in ("hi", "a much longer question about the weather")]
    targets = ["hello there", "it rains"]
    batched = token_logprobs(model, tok, prefixes, targets, batch_size=2)
    single = [
        token_logprobs(model, tok, [p], [t], batch_size=1)[0] for p, t in zip(prefixes, targets)
    ]
    for (ids_b, lp_b), (ids_s, lp_s) in zip(batched, single):
        np.testing.assert_array_equal(ids_b, ids_s)
        np.testing.assert_allclose(lp_b, lp_s, atol=1e-4)
    # reference: one plain forward pass over the concatenated ids
    import torch

    p_ids = tok(prefixes[0], add_special_tokens=False)["input_ids"]
    t_ids = tok(targets[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p_ids + t_ids])).logits[0]
    ref = torch.log_softmax(logits.float(), -1)[len(p_ids) - 1 : -1].gather(
        1, torch.tensor(t_ids)[:, None]
    )[:, 0]
    np.testing.assert_allclose(batched[0][1], ref.numpy(), atol=1e-4)
    assert all(lp.max() <= 0 for _, lp in batched)
    sp = self_perplexity(model, tok, ["You are a clown.", "Be concise."], None)
    assert all(r > 0 and c > 0 and n > 0 for r, c, n in sp)


def test_hf_judge_on_stub_scores_its_next_token_distribution(stub_dir, tmp_path):
    """The hf backend (the stub as a logprob judge) returns the model's own top-20 next-token
    logprobs after the chat prompt (ids decoding alike merged), and the score is the digit EV
    over them: NaN when no digit is among them, as on the random stub."""
    import torch

    from interpflow.judges import Judge
    from interpflow.models import ModelSpec, chat_prompt, load_model

    cfg = JudgeConfig(backend="hf", model=str(stub_dir))
    req = trait_request("Playful", "playful", "Say hi", "haha hello!")
    with Judge(cfg, tmp_path / "c.sqlite") as judge:
        (reply,), _ = judge.run([req])
    # reference: one forward pass over the same prompt
    model, tok = load_model(ModelSpec(str(stub_dir)))
    prompt = chat_prompt(tok, req.user, system=req.system)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(model(**enc).logits[0, -1].float(), -1)
    values, ids = torch.topk(logp, 20)
    probs: dict[str, float] = {}
    for v, i in zip(values.tolist(), ids.tolist()):
        probs[tok.decode([i])] = probs.get(tok.decode([i]), 0.0) + math.exp(v)
    got = {k: math.exp(v) for k, v in reply.top_logprobs.items()}
    assert got == pytest.approx(probs, abs=1e-5)
    assert reply.text == tok.decode([ids[0]], skip_special_tokens=True)  # greedy
    digits = {int(k.strip()): p for k, p in probs.items() if k.strip() in tuple("0123456789")}
    mass = sum(digits.values())
    expected = sum(d * p for d, p in digits.items()) / mass / 9 * 100 if digits else math.nan
    assert reply_score(reply, 0.0) == pytest.approx(expected, nan_ok=True)


def test_eval_config_is_the_schema_block_and_rejects_unknown_backend():
    from dataclasses import asdict, fields

    from interpflow.inoculation import EvalConfig

    with pytest.raises(ValueError, match="'tgi' is not one of hf, vllm"):
        EvalConfig(backend="tgi")
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["inoculation"]["properties"]["eval"]["properties"]
    # scripts/inoculation_eval.py builds EvalConfig(**inoculation.eval): every key the schema
    # lets through is a field, and every field can be configured
    assert set(props) == {f.name for f in fields(EvalConfig)}
    # the backends the schema allows are kept as asked; eval_backend() is what falls back from
    # vllm to hf where vLLM does not import (tests/test_vllm_backend.py)
    assert [EvalConfig(backend=b).backend for b in props["backend"]["enum"]] == ["hf", "vllm"]
    block = yaml.safe_load((REPO / "config/config.yaml").read_text())["inoculation"]["eval"]
    assert asdict(EvalConfig(**block)) == block
