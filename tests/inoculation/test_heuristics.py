"""Unit tests: the heuristics stage (W matrices, row stats, PCA/SVD, angles, gradient and
embedding heuristics)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from interpflow.inoculation import heuristics as H
from interpflow.inoculation.correlations import pearson
from interpflow.inoculation.embedding_stats import EMBEDDING_STATS, embedding_stats
from interpflow.inoculation.gradients import (
    GRADIENT_STATS,
    gradient_stats,
)
from interpflow.inoculation.heuristics import (
    angle_groups,
    compute_heuristics,
    embed,
    heuristics_stage,
    orient,
    pairwise_angles,
    read_token_deltas,
    row_stats,
    w_matrix,
)
from interpflow.inoculation.study import InocPrompt


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


def test_token_deltas_concatenate_examples_streamed_in_batches():
    ex = _examples({"none": [0, 0], "a:fixed": [0, 0]}).with_columns(
        n_tokens=pl.Series([2, 1, 2, 1])
    )
    tok = pl.DataFrame(
        {
            "row_id": ["a:fixed|e1", "none|e0", "none|e1", "a:fixed|e0", "none|e0", "a:fixed|e0"],
            "token_index": [0, 1, 0, 1, 0, 0],
            "logprob": [-1.0, -2.0, -3.0, -2.5, -1.0, -0.5],
        }
    )
    for batch_rows in (1, 4, None):  # a batch ends inside an example, or holds the table
        d = read_token_deltas(examples=ex, tokens=tok, batch_rows=batch_rows)
        keys, Wt = d.matrix("fixed")
        assert keys == ["a"] and d.matrix("mix") == ([], pytest.approx(np.zeros((0, 0))))
        np.testing.assert_allclose(Wt, [[0.5, -0.5, 2.0]])
        pairs = d.pairs("fixed", "a")
        assert pairs.rows() == [("e0", 0, -1.0, -0.5), ("e0", 1, -2.0, -2.5), ("e1", 0, -3.0, -1.0)]
    # each row's token rows must be exactly its n_tokens, and every prompt scores the same tokens
    with pytest.raises(ValueError, match=r"1 rows have token rows other than their n_tokens"):
        read_token_deltas(examples=ex, tokens=tok.tail(5))
    with pytest.raises(ValueError, match="prompts scored different token counts"):
        read_token_deltas(examples=ex.with_columns(n_tokens=pl.Series([2, 1, 2, 2])), tokens=tok)


def _joined_pairs(examples: pl.DataFrame, tokens: pl.DataFrame, prefix_type: str) -> dict:
    """The in-memory computation the stage made before it streamed (kept as the reference):
    the whole per-token table joined to the per-example rows, then prefix vs no prefix."""
    tok = tokens.join(
        examples.select("row_id", "prefix_type", "prompt_key", "example_id"), on="row_id"
    )
    base = tok.filter(pl.col("prefix_type") == "none").select(
        "example_id", "token_index", pl.col("logprob").cast(pl.Float64).alias("lp_base")
    )
    pairs = (
        tok.filter(pl.col("prefix_type") == prefix_type)
        .join(base, on=["example_id", "token_index"])
        .select(
            "prompt_key",
            "example_id",
            "token_index",
            "lp_base",
            pl.col("logprob").cast(pl.Float64).alias("lp_prefix"),
        )
    )
    parts = pairs.partition_by("prompt_key", as_dict=True, include_key=False)
    return dict(sorted((k[0], v.sort("example_id", "token_index")) for k, v in parts.items()))


def _token_tables(seed: int = 0):
    """Per-example and per-token tables of 3 fixed + 2 mix prompts over 6 examples of 0-5
    tokens (float32 logprobs, rows shuffled, ids whose string order is not their numeric one,
    and rows of another dataset that no per-example row names)."""
    rng = np.random.default_rng(seed)
    ids = ["e2", "e10", "e1", "e0", "e11", "e3"]
    lengths = dict(zip(ids, [3, 5, 0, 4, 1, 2]))
    conds = ["none", "a:fixed", "b:fixed", "c:fixed", "a:mix", "c:mix"]
    ex_rows, tok_rows = [], []
    for cond in conds:
        key, ptype = (None, "none") if cond == "none" else cond.split(":")
        for e in ids:
            lp = rng.normal(-2.0, 1.0, lengths[e]).astype(np.float32)
            rid = f"train|{cond}|{e}"
            ex_rows.append(
                (
                    rid,
                    ptype,
                    key,
                    e,
                    lengths[e],
                    float(lp.astype(np.float64).mean()) if lp.size else math.nan,
                )
            )
            tok_rows += [(rid, i, v) for i, v in enumerate(lp)]
    tok_rows += [("other|none|e0", 0, -1.0), ("other|none|e0", 1, -2.0)]
    cols = ["row_id", "prefix_type", "prompt_key", "example_id", "n_tokens", "logprob_mean"]
    ex = pl.DataFrame(ex_rows, schema=cols, orient="row", schema_overrides={"n_tokens": pl.Int32})
    tok = pl.DataFrame(
        [tok_rows[i] for i in rng.permutation(len(tok_rows))],
        schema={"row_id": pl.String, "token_index": pl.Int32, "logprob": pl.Float32},
        orient="row",
    )
    return ex, tok


def test_streamed_token_deltas_equal_the_in_memory_join_exactly(tmp_path):
    ex, tok = _token_tables()
    path = tmp_path / "train.tokens.parquet"
    tok.write_parquet(path, row_group_size=7)
    for tokens, batch_rows in ((tok, 5), (path, 5), (path, None)):
        d = read_token_deltas(examples=ex, tokens=tokens, batch_rows=batch_rows)
        assert d.values.dtype == np.float32  # the table's precision, widened only to subtract
        for ptype, want_keys in (("fixed", ["a", "b", "c"]), ("mix", ["a", "c"])):
            ref = _joined_pairs(ex, tok, ptype)
            keys, Wt = d.matrix(ptype)
            assert keys == list(ref) == want_keys
            want = np.vstack([(v["lp_prefix"] - v["lp_base"]).to_numpy() for v in ref.values()])
            np.testing.assert_array_equal(Wt, want)
            assert Wt.shape == (len(keys), 3 + 5 + 4 + 1 + 2)  # e1 scored no token
            for i, key in enumerate(keys):
                pairs = d.pairs(ptype, key)
                assert_frame_equal(pairs, ref[key])
                a, b = gradient_stats(pairs), gradient_stats(ref[key])
                assert a.keys() == b.keys()
                assert all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
    # a known answer: prompt b's fixed delta at e10's third token (column 1 of e0 + 2 of e10)
    b_e10 = tok.filter(pl.col("row_id") == "train|b:fixed|e10", pl.col("token_index") == 2)
    base = tok.filter(pl.col("row_id") == "train|none|e10", pl.col("token_index") == 2)
    col = 4 + 0 + 2  # columns in example_id order: e0 (4 tokens), e1 (0), e10 (...)
    assert d.matrix("fixed")[1][1, col] == float(b_e10["logprob"][0]) - float(base["logprob"][0])
    assert d.example_ids == ["e0", "e1", "e10", "e11", "e2", "e3"]


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


def _w_with_known_axis(seed=0, n=12, d=30):
    """Rows = strength_i * u + noise; u sums to > 0 (+PC1 must mean a larger uplift) but its
    largest-magnitude entry is negative, where sklearn's own sign convention points PC1 the
    other way."""
    rng = np.random.default_rng(seed)
    strength = rng.uniform(0.0, 2.0, size=n)
    u = rng.uniform(0.5, 1.5, size=d)
    u[0] = -6.0
    return np.outer(strength, u) + 0.05 * rng.normal(size=(n, d)), strength


def test_components_are_oriented_by_the_loadings_sum_not_the_solver():
    W, strength = _w_with_known_axis()
    e = embed(W, 3)
    for method in ("pca", "svd"):
        pc1 = e[method][:, 0]
        # the stated rule: +PC1 raises the mean W entry, so PC1 follows the known strength
        assert pearson(pc1, strength)[0] > 0.99
        assert pearson(pc1, W.mean(axis=1))[0] > 0.99
    # a solver that returned the opposite signs gets the same oriented answer
    rng = np.random.default_rng(1)
    scores, comps = rng.normal(size=(12, 3)), rng.normal(size=(3, 30))
    a_scores, a_comps = orient(scores, comps)
    b_scores, b_comps = orient(-scores, -comps)
    np.testing.assert_array_equal(a_scores, b_scores)
    np.testing.assert_array_equal(a_comps, b_comps)
    assert (a_comps.sum(axis=1) >= 0).all()
    # a zero-sum loading vector: the largest-magnitude loading is made positive
    s0, c0 = orient(np.array([[1.0], [-2.0]]), np.array([[0.2, -0.9, 0.7]]))
    assert c0.tolist() == [[-0.2, 0.9, -0.7]] and s0[:, 0].tolist() == [-1.0, 2.0]


def test_a_solver_sign_flip_cannot_flip_r_with_suppression():
    # the same rows with the columns permuted: the solver may return either sign, the oriented
    # coordinates (and so r with suppression) may not change
    W, strength = _w_with_known_axis(seed=2)
    suppression = 30 * strength + np.random.default_rng(3).normal(size=len(strength))
    perm = np.random.default_rng(4).permutation(W.shape[1])
    for method in ("pca", "svd"):
        r = pearson(embed(W, 2)[method][:, 0], suppression)[0]
        r_perm = pearson(embed(W[:, perm], 2)[method][:, 0], suppression)[0]
        assert r > 0.95 and r_perm == pytest.approx(r)


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
    # HB2 / HB6 (a simulated training run the seed does not define) are not computed
    assert not {"sim_grad_saved", "sim_residual"} & set(st)


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


def test_gradient_stats_are_the_same_every_run():
    # 2000 examples: an unordered group_by summed the per-example means in a different order
    # each call, so PH x coherence (HB4) changed in its last bits (28 values in 50 calls)
    rng = np.random.default_rng(0)
    lb, lp = rng.normal(-2, 1, (2000, 3)), rng.normal(-1, 1, (2000, 3))
    pairs = _pairs(
        {f"e{i:04d}": lb[i].tolist() for i in range(2000)},
        {f"e{i:04d}": lp[i].tolist() for i in range(2000)},
    )
    runs = {gradient_stats(pairs)["strength_x_coherence"] for _ in range(8)}
    assert len(runs) == 1


def test_one_example_has_no_coherence():
    lp = np.log(np.array([0.1, 0.3, 0.5]))
    st = gradient_stats(_pairs({"e": lp.tolist()}, {"e": (lp + 0.5).tolist()}))
    assert st["mean_tok_diff"] == pytest.approx(0.5)
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


def test_compute_heuristics_tables(tmp_path, monkeypatch):
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
                    "n_tokens": n_tok,
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
        train=ex,
        train_tokens=tok,
        neutral=ex,
        traits={"Playful": ex},
        selfperp=selfperp,
        prompt_traits={"a": "Playful", "b": "French", "n": "neutral"},
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
    # the larger the shift, the larger the gradient magnitude (HA4); the neutral prompt's ~none
    magnitude = fixed["grad_magnitude"].to_list()
    assert magnitude[0] > magnitude[1] > abs(magnitude[2])
    assert fixed["mean_tok_diff"].to_list() == pytest.approx(fixed["ph"].to_list())
    assert t["emb_rephrase_mean_cos"].to_list()[:2] == pytest.approx([1.0, 0.5])
    mix = t.filter(pl.col("prefix_type") == "mix").row(0, named=True)
    assert mix["ph_ratio"] == pytest.approx(0.75, abs=0.05) and mix["cos_fixed_mix"] > 0.99
    # the stage reads the same tables from files; each trait's rows come from the one traits
    # table (its dataset column), and a trait without rows is an error naming the file
    files = {name: tmp_path / f"in_{name}.parquet" for name in ("ex", "tok", "traits", "sp")}
    ex.write_parquet(files["ex"])
    tok.write_parquet(files["tok"])
    selfperp.write_parquet(files["sp"])
    pl.concat(
        [ex.with_columns(dataset=pl.lit(f"trait_{t}")) for t in ("Playful", "French")]
    ).write_parquet(files["traits"])
    prompts = {
        k: InocPrompt(k, t, f"prompt {k}")
        for k, t in {"a": "Playful", "b": "French", "n": "neutral"}.items()
    }
    staged = {name: tmp_path / f"stage_{name}" for name in ("t", "e", "a", "s", "W", "m")}
    kw = {
        "train": files["ex"],
        "train_tokens": files["tok"],
        "neutral": files["ex"],
        "traits": files["traits"],
        "selfperp": files["sp"],
        "prompts": prompts,
        "out_table": staged["t"],
        "out_embeddings": staged["e"],
        "out_angles": staged["a"],
        "out_angle_summary": staged["s"],
        "out_matrices": staged["W"],
        "out_meta": staged["m"],
    }
    # the stage streams the per-token table (3 rows at a time here), never reads it whole, and
    # gets the in-memory frame's answer
    whole = H.read_parquet

    def read_parquet(path):
        assert path != files["tok"], "the per-token table was read whole"
        return whole(path)

    monkeypatch.setattr(H, "read_parquet", read_parquet)
    monkeypatch.setattr(H, "TOKEN_BATCH_ROWS", 3)
    heuristics_stage(**kw, trait_names=["Playful", "French"])
    st = pl.read_parquet(staged["t"]).sort("prefix_type", "prompt_key")
    in_memory = t.drop(EMBEDDING_STATS)
    assert_frame_equal(st.select(in_memory.columns), in_memory)
    assert st["ph_Playful"].to_list() == pytest.approx(t["ph_Playful"].to_list())
    assert st["ph_French"].to_list() == pytest.approx(t["ph_Playful"].to_list())  # same rows
    assert st["ph"].to_list() == pytest.approx(t["ph"].to_list())
    with pytest.raises(ValueError, match=r"in_traits.parquet: no rows .* \['German'\]"):
        heuristics_stage(**kw, trait_names=["Playful", "German"])


def test_one_trained_prompt_gives_an_empty_angle_summary_with_its_columns(tmp_path):
    """Exp 1's instance trains one prompt: no prompt pairs, so no summary rows; the table
    keeps its columns and the report's angle bars draw from it (an empty panel)."""
    from interpflow.inoculation import paper_figures as paper
    from interpflow.inoculation.heuristics import ANGLE_SUMMARY_SCHEMA

    rng = np.random.default_rng(2)
    ex_rows, tok_rows = [], []
    for cond, shift in {"none": 0.0, "a:fixed": 0.4}.items():
        key, ptype = cond.split(":") if ":" in cond else (None, "none")
        for k in range(4):
            lp = rng.normal(-2.0, 0.5, size=3) + shift
            rid = f"{cond}|e{k}"
            ex_rows.append(
                {"row_id": rid, "prefix_type": ptype, "prompt_key": key, "example_id": f"e{k}",
                 "n_tokens": 3, "logprob_mean": float(lp.mean())}
            )  # fmt: skip
            tok_rows += [
                {"row_id": rid, "token_index": i, "logprob": float(v)} for i, v in enumerate(lp)
            ]
    ex = pl.DataFrame(ex_rows, schema_overrides={"prompt_key": pl.String})
    tok = pl.DataFrame(tok_rows, schema_overrides={"logprob": pl.Float32})
    outs = {
        n: tmp_path / f"{n}.parquet" for n in ("table", "embeddings", "angles", "angle_summary")
    }
    compute_heuristics(
        train=ex, train_tokens=tok, neutral=ex, traits={"Playful": ex},
        selfperp=pl.DataFrame({"prompt_key": ["a"], "selfperp_raw": [3.0]}),
        prompt_traits={"a": "Playful"}, out_table=outs["table"],
        out_embeddings=outs["embeddings"], out_angles=outs["angles"],
        out_angle_summary=outs["angle_summary"], out_matrices=tmp_path / "W.safetensors",
        out_meta=tmp_path / "W.json",
    )  # fmt: skip
    summary = pl.read_parquet(outs["angle_summary"])
    assert summary.height == 0 and summary.schema == pl.Schema(ANGLE_SUMMARY_SCHEMA)
    paper.fig_angle_bars(summary, tmp_path / "bars.png", tmp_path / "bars.csv")
    assert (tmp_path / "bars.png").stat().st_size > 0
