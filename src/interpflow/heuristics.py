"""Cheap base-model predictors of inoculation strength (seed 003, experiments 11-20).

Everything here is computed from teacher-forced logprobs of the BASE model
(:mod:`interpflow.logprobs`); no training is needed. For an inoculation prompt ``n`` and a
completion ``k`` the per-example weight is

    w[n, k] = lp(completion_k | prefix_n + instruction_k) - lp(completion_k | instruction_k)

where ``lp`` is the completion's mean token logprob (length-normalised, so long completions
do not dominate). ``fixed`` uses the prompt itself as the prefix of every example; ``mix``
uses the index-matched rephrasing ``rephrasings[k % R]`` (the signal mix training sees).

Per prompt and prefix type: PH = mean(w) on the training completions, gamma = frac(w > 0),
sigma = std(w), SNR = PH / sigma, PPD = mean(|w|) on neutral control completions, and the
cross-trait PH/PPD on each trait's trait-only completions. The W matrices (prompts x
examples, and prompts x all completion tokens for ``W_tokens``) are embedded with PCA
(mean-centred) and TruncatedSVD (uncentred, so 0 = the no-prefix baseline), and pairwise
angles between prompts are measured on the raw rows and on both top-2 projections.

From the per-token differences: the step-1 gradient heuristics HA2-HA5 and the cumulative
HB1-HB6 (:func:`gradient_stats`, including a simulated K-step training run). From semantic
text embeddings of each prompt and its rephrasings (:mod:`interpflow.embeddings`): rephrasing
spread, distance from the neutral prompts and cosine to each trait's prompts
(:func:`embedding_stats`); with elicitation they form the H7 composite in :func:`correlate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import write_json, write_parquet

#: Scalar heuristics of one W row (the keys of :func:`row_stats`).
ROW_STATS = ("ph", "gamma", "sigma", "snr", "ppd")


def w_matrix(
    examples: pl.DataFrame, prefix_type: str, value: str = "logprob_mean"
) -> tuple[list[str], list[str], np.ndarray]:
    """``(prompt_keys, example_ids, W)`` with ``W[n, k] = value(prompt n) - value(no prefix)``.

    ``examples`` is a per-example logprob table with ``prefix_type`` (none/fixed/mix),
    ``prompt_key`` and ``example_id`` columns. Rows and columns are sorted by key and id.
    """
    base = examples.filter(pl.col("prefix_type") == "none").select("example_id", value)
    if base.height == 0:
        raise ValueError("logprob table has no 'none' (no prefix) rows to difference against")
    pre = examples.filter(pl.col("prefix_type") == prefix_type)
    if pre.height == 0:
        return [], base["example_id"].sort().to_list(), np.zeros((0, base.height))
    wide = (
        pre.join(base, on="example_id", suffix="_base")
        .with_columns((pl.col(value) - pl.col(f"{value}_base")).alias("w"))
        .pivot(on="example_id", index="prompt_key", values="w")
        .sort("prompt_key")
    )
    ids = sorted(c for c in wide.columns if c != "prompt_key")
    return wide["prompt_key"].to_list(), ids, wide.select(ids).to_numpy().astype(np.float64)


def token_pairs(
    examples: pl.DataFrame, tokens: pl.DataFrame, prefix_type: str
) -> dict[str, pl.DataFrame]:
    """Per prompt key: ``example_id, token_index, lp_base, lp_prefix`` of every completion token.

    ``lp_base`` is the token's logprob with no prefix, ``lp_prefix`` with the prompt's prefix
    (``prefix_type``); rows are sorted by (example_id, token_index).
    """
    tok = tokens.join(
        examples.select("row_id", "prefix_type", "prompt_key", "example_id"), on="row_id"
    )
    base = tok.filter(pl.col("prefix_type") == "none").select(
        "example_id", "token_index", pl.col("logprob").cast(pl.Float64).alias("lp_base")
    )
    pre = tok.filter(pl.col("prefix_type") == prefix_type)
    if pre.height == 0:
        return {}
    pairs = pre.join(base, on=["example_id", "token_index"]).select(
        "prompt_key",
        "example_id",
        "token_index",
        "lp_base",
        pl.col("logprob").cast(pl.Float64).alias("lp_prefix"),
    )
    parts = pairs.partition_by("prompt_key", as_dict=True, include_key=False)
    out = {k[0]: v.sort("example_id", "token_index") for k, v in parts.items()}
    return dict(sorted(out.items()))


def w_tokens(
    examples: pl.DataFrame, tokens: pl.DataFrame, prefix_type: str
) -> tuple[list[str], np.ndarray]:
    """``(prompt_keys, W_tokens)``: per-token logprob differences, all completions concatenated.

    Column order is (example_id, token_index); every prompt scores the same completion tokens.
    """
    return _token_matrix(token_pairs(examples, tokens, prefix_type))


def _token_matrix(pairs: Mapping[str, pl.DataFrame]) -> tuple[list[str], np.ndarray]:
    if not pairs:
        return [], np.zeros((0, 0))
    rows = [(df["lp_prefix"] - df["lp_base"]).to_numpy() for df in pairs.values()]
    width = {len(r) for r in rows}
    if len(width) != 1:
        raise ValueError(f"prompts scored different token counts: {sorted(width)}")
    return list(pairs), np.vstack(rows)


def row_stats(w: np.ndarray) -> dict[str, float]:
    """PH, gamma, sigma, SNR and PPD (mean |w|) of one vector of weights (NaNs ignored)."""
    w = np.asarray(w, dtype=np.float64)
    w = w[np.isfinite(w)]
    if w.size == 0:
        return dict.fromkeys(ROW_STATS, math.nan)
    mean = float(w.mean())
    sd = float(w.std(ddof=1)) if w.size > 1 else math.nan
    return {
        "ph": mean,
        "gamma": float((w > 0).mean()),
        "sigma": sd,
        "snr": mean / sd if sd and math.isfinite(sd) and sd > 0 else math.nan,
        "ppd": float(np.abs(w).mean()),
    }


@dataclass(frozen=True)
class GradientConfig:
    """Thresholds of the step-1 (HA) and cumulative (HB) gradient heuristics (seed 003)."""

    filter_threshold: float = 0.5
    """HA2/HA5: only tokens with |delta| above this count (the others contribute 0)."""
    top_fraction: float = 0.25
    """HA3: share of tokens, ranked by |delta|, whose mean delta is taken."""
    persist_threshold: float = 0.1
    """HB3: a position is affected in an example when |delta| exceeds this."""
    persist_share: float = 0.5
    """HB3: ... and persistent when affected in at least this share of the examples."""
    sim_steps: int = 32
    """HB2/HB6: simulated gradient steps K."""
    sim_lr: float = 1.0
    """HB2/HB6: step size on each token's log-odds."""
    variance_share: float = 0.5
    """HB5: effective rank = principal components needed for this share of the variance."""

    def __post_init__(self) -> None:
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0 < self.persist_share <= 1:
            raise ValueError(f"persist_share must be in (0, 1], got {self.persist_share}")
        if not 0 < self.variance_share <= 1:
            raise ValueError(f"variance_share must be in (0, 1], got {self.variance_share}")
        if self.sim_steps < 1 or self.sim_lr <= 0:
            raise ValueError(f"sim_steps must be >= 1 and sim_lr > 0, got {self}")


#: Columns of :func:`gradient_stats` (seed 003's names in brackets).
GRADIENT_STATS = (
    "mean_tok_diff",  # H14: mean(delta)
    "filtered_tok_diff",  # HA2
    "top_tok_diff",  # HA3
    "grad_magnitude",  # HA4
    "filtered_grad_magnitude",  # HA5
    "signal_coherence",  # HB1
    "sim_grad_saved",  # HB2
    "persistent_frac",  # HB3
    "strength_x_coherence",  # HB4
    "effective_rank",  # HB5
    "sim_residual",  # HB6
)


def simulate_nll(lp: np.ndarray, steps: int, lr: float) -> tuple[float, float]:
    """``(sum over steps of the mean gradient, final mean NLL)`` of a simulated training run.

    Each token's probability ``p = exp(lp)`` is a free log-odds ``z``; ``steps`` steps of
    gradient descent on ``-log sigmoid(z)`` (gradient magnitude ``1 - sigmoid(z)``) with step
    size ``lr``. A token the model already predicts gives little gradient and little residual.
    """
    p = np.clip(np.exp(np.asarray(lp, dtype=np.float64)), 1e-7, 1 - 1e-7)
    z = np.log(p) - np.log1p(-p)
    total = 0.0
    for _ in range(steps):
        g = 1.0 / (1.0 + np.exp(z))
        total += float(g.mean())
        z = z + lr * g
    return total, float(np.logaddexp(0.0, -z).mean())


def gradient_stats(pairs: pl.DataFrame, cfg: GradientConfig = GradientConfig()) -> dict[str, float]:
    """Step-1 (HA) and cumulative (HB) gradient heuristics of one prompt.

    ``pairs``: one prompt's :func:`token_pairs` frame; ``delta = lp_prefix - lp_base`` per token.
    HA2 mean(delta * [|delta| > t]); HA3 mean delta of the top share of tokens by |delta|; HA4
    mean(1 - exp(-|delta|)); HA5 HA4 with the same filter as HA2. The per-example token matrix
    (examples x positions, 0 past a completion's end) gives HB1 = PC1's share of its variance
    and HB5 = the components needed for ``variance_share``; HB3 = share of positions where
    |delta| > ``persist_threshold`` in at least ``persist_share`` of the examples that reach
    them; HB4 = PH (mean per-example delta) x HB1. HB2 and HB6 compare :func:`simulate_nll` runs
    without and with the prefix: the gradient the prefix saves over K steps, and the loss it
    still explains after them (both > 0 when the prefix pre-explains the completions).
    """
    if pairs.height == 0:
        return dict.fromkeys(GRADIENT_STATS, math.nan)
    d = (pairs["lp_prefix"] - pairs["lp_base"]).to_numpy()
    a = np.abs(d)
    keep = a > cfg.filter_threshold
    n_top = max(1, math.ceil(cfg.top_fraction * d.size))
    top = np.argsort(-a, kind="stable")[:n_top]
    mag = 1.0 - np.exp(-a)
    out = {
        "mean_tok_diff": float(d.mean()),
        "filtered_tok_diff": float(np.where(keep, d, 0.0).mean()),
        "top_tok_diff": float(d[top].mean()),
        "grad_magnitude": float(mag.mean()),
        "filtered_grad_magnitude": float(np.where(keep, mag, 0.0).mean()),
    }
    ex = pairs.with_columns(
        delta=pl.col("lp_prefix") - pl.col("lp_base"),
        row=pl.col("example_id").rank("dense") - 1,
    )
    n_ex, width = ex["example_id"].n_unique(), int(ex["token_index"].max()) + 1
    M = np.zeros((n_ex, width))
    reach = np.zeros((n_ex, width), dtype=bool)
    r, c = ex["row"].to_numpy(), ex["token_index"].to_numpy()
    M[r, c], reach[r, c] = ex["delta"].to_numpy(), True
    coherence, rank = math.nan, math.nan
    if n_ex >= 2:
        sv = np.linalg.svd(M - M.mean(axis=0), compute_uv=False) ** 2
        if sv.sum() > 0:
            share = sv / sv.sum()
            coherence = float(share[0])
            rank = float(np.searchsorted(np.cumsum(share), cfg.variance_share - 1e-12) + 1)
    affected = ((np.abs(M) > cfg.persist_threshold) & reach).sum(axis=0)
    persistent = affected >= cfg.persist_share * reach.sum(axis=0)
    ph = float(ex.group_by("example_id").agg(pl.col("delta").mean())["delta"].mean())
    g_base, l_base = simulate_nll(pairs["lp_base"].to_numpy(), cfg.sim_steps, cfg.sim_lr)
    g_pre, l_pre = simulate_nll(pairs["lp_prefix"].to_numpy(), cfg.sim_steps, cfg.sim_lr)
    out |= {
        "signal_coherence": coherence,
        "sim_grad_saved": g_base - g_pre,
        "persistent_frac": float(persistent.mean()),
        "strength_x_coherence": ph * coherence,
        "effective_rank": rank,
        "sim_residual": l_base - l_pre,
    }
    return out


#: Columns of :func:`embedding_stats` (semantic text embeddings of the prompts).
EMBEDDING_STATS = (
    "emb_rephrase_mean_cos",
    "emb_rephrase_std_cos",  # H6
    "emb_rephrase_min_cos",
    "emb_rephrase_eff_rank",
    "emb_dist_from_neutral",  # H5
    "emb_cos_own_trait",
    "emb_cos_other_trait",  # H9a
)


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    return np.divide(X, n, out=np.zeros_like(X), where=n > 0)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else math.nan


def embedding_stats(
    prompt_vecs: Mapping[str, np.ndarray],
    rephrasing_vecs: Mapping[str, np.ndarray],
    prompt_traits: Mapping[str, str],
    neutral: str = "neutral",
) -> pl.DataFrame:
    """Per prompt: geometry of its text embedding and its rephrasings' (seed 003, H5/H6/H9a).

    Vectors are L2-normalised first. ``emb_rephrase_{mean,std,min}_cos``: cosine of each
    rephrasing to the prompt; ``emb_rephrase_eff_rank``: exp(entropy(s / sum s)) of the singular
    values of the centred rephrasing matrix; ``emb_dist_from_neutral``: L2 distance to the
    centroid of the (other) neutral prompts; ``emb_cos_own_trait`` / ``emb_cos_other_trait``:
    cosine to the centroid of the other prompts naming the same trait / a different trait
    (NaN for neutral prompts' "other trait", and wherever a group is empty).
    """
    keys = sorted(prompt_vecs)
    P = {k: _unit(prompt_vecs[k]) for k in keys}

    def centroid(members: list[str]) -> np.ndarray | None:
        return np.mean([P[m] for m in members], axis=0) if members else None

    rows = []
    for k in keys:
        v, trait = P[k], prompt_traits.get(k, neutral)
        rec: dict = {"prompt_key": k, **dict.fromkeys(EMBEDDING_STATS, math.nan)}
        R = _unit(rephrasing_vecs.get(k, np.zeros((0, v.size))))
        if len(R):
            cos = R @ v
            rec["emb_rephrase_mean_cos"] = float(cos.mean())
            rec["emb_rephrase_min_cos"] = float(cos.min())
            rec["emb_rephrase_std_cos"] = float(cos.std(ddof=1)) if len(R) > 1 else math.nan
        if len(R) > 1:
            s = np.linalg.svd(R - R.mean(axis=0), compute_uv=False)
            if s.sum() > 0:
                q = s[s > 0] / s.sum()
                rec["emb_rephrase_eff_rank"] = float(np.exp(-(q * np.log(q)).sum()))
        others = [m for m in keys if m != k]
        c = centroid([m for m in others if prompt_traits.get(m, neutral) == neutral])
        if c is not None:
            rec["emb_dist_from_neutral"] = float(np.linalg.norm(v - c))
        c = centroid([m for m in others if prompt_traits.get(m, neutral) == trait])
        if c is not None:
            rec["emb_cos_own_trait"] = _cos(v, c)
        if trait != neutral:
            c = centroid(
                [m for m in others if prompt_traits.get(m, neutral) not in (trait, neutral)]
            )
            if c is not None:
                rec["emb_cos_other_trait"] = _cos(v, c)
        rows.append(rec)
    schema = {"prompt_key": pl.String, **dict.fromkeys(EMBEDDING_STATS, pl.Float64)}
    return pl.DataFrame(rows, schema=schema)


def embed(W: np.ndarray, n_components: int = 3, seed: int = 0) -> dict:
    """PCA and TruncatedSVD of ``W``'s rows, with explained-variance ratios.

    ``n_components`` is capped by the matrix rank limits (PCA: min(n_rows - 1, n_cols);
    TruncatedSVD: min(n_rows, n_cols) - 1, at least 1). Missing components are NaN columns.
    """
    from sklearn.decomposition import PCA, TruncatedSVD

    W = np.nan_to_num(np.asarray(W, dtype=np.float64))
    n, d = W.shape
    out = {
        "pca": np.full((n, n_components), np.nan),
        "svd": np.full((n, n_components), np.nan),
        "pca_var": [math.nan] * n_components,
        "svd_var": [math.nan] * n_components,
    }
    if n == 0 or d == 0:
        return out
    k_pca = min(n_components, n - 1, d)  # centred rows span at most n - 1 directions
    if k_pca >= 1:
        pca = PCA(n_components=k_pca, random_state=seed).fit(W)
        out["pca"][:, :k_pca] = pca.transform(W)
        out["pca_var"][:k_pca] = pca.explained_variance_ratio_.tolist()
    k_svd = min(n_components, max(min(n, d) - 1, 1))
    if d >= 2 and n >= 2:  # one row has no variance to explain
        svd = TruncatedSVD(
            n_components=k_svd,
            random_state=seed,
            algorithm="arpack" if k_svd < min(n, d) else "randomized",
        )
        out["svd"][:, :k_svd] = svd.fit_transform(W)
        out["svd_var"][:k_svd] = svd.explained_variance_ratio_.tolist()
    return out


def pairwise_angles(X: np.ndarray) -> np.ndarray:
    """Angle in degrees between every pair of rows (NaN where a row is all zeros)."""
    X = np.nan_to_num(np.asarray(X, dtype=np.float64))
    norms = np.linalg.norm(X, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (X @ X.T) / np.outer(norms, norms)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def angle_groups(angles: np.ndarray, groups: Sequence[str], neutral: str = "neutral") -> list[dict]:
    """Mean ± std angle per pair class: within-<trait>, <a>x<b> (cross-trait), <trait>xneutral."""
    pairs: dict[str, list[float]] = {}
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            a, b = sorted((groups[i], groups[j]))
            name = f"within-{a}" if a == b else f"{a}x{b}"
            if np.isfinite(angles[i, j]):
                pairs.setdefault(name, []).append(float(angles[i, j]))
    return [
        {
            "pair": k,
            "kind": "within"
            if k.startswith("within-")
            else ("neutral" if neutral in k.split("x") else "cross"),
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
            "n": len(v),
        }
        for k, v in sorted(pairs.items())
    ]


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Pearson r over the finite pairs, and their count (NaN when fewer than 3 or constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return math.nan, n
    return float(np.corrcoef(x[ok], y[ok])[0, 1]), n


def compute_heuristics(
    train: pl.DataFrame,
    train_tokens: pl.DataFrame,
    neutral: pl.DataFrame,
    traits: Mapping[str, pl.DataFrame],
    selfperp: pl.DataFrame,
    prompt_traits: Mapping[str, str],
    out_table: str | Path,
    out_embeddings: str | Path,
    out_angles: str | Path,
    out_angle_summary: str | Path,
    out_matrices: str | Path,
    out_meta: str | Path,
    text_embeddings: pl.DataFrame | None = None,
    gradient: GradientConfig = GradientConfig(),
    n_components: int = 3,
    seed: int = 0,
) -> dict:
    """All heuristics for every prompt x prefix type (fixed, mix); writes six artifacts.

    ``train``/``neutral``/``traits[T]`` are per-example logprob tables of the SFT set, the
    neutral controls and trait T's trait-only completions; ``train_tokens`` the per-token
    table of the SFT set; ``selfperp`` has ``prompt_key, selfperp_raw, selfperp_context``;
    ``prompt_traits`` maps prompt key -> trait name (or "neutral"). ``text_embeddings``
    (optional; ``prompt_key, kind`` = prompt/rephrasing, ``vector``) adds the
    :func:`embedding_stats` columns, the same for both prefix types.
    """
    from safetensors.numpy import save_file

    from interpflow.artifacts import atomic_path

    rows, emb_rows, angle_rows, summary_rows = [], [], [], []
    matrices: dict[str, np.ndarray] = {}
    meta: dict = {"explained_variance": {}, "row_keys": {}, "columns": {}}
    Ws: dict[str, tuple[list[str], np.ndarray]] = {}
    for ptype in ("fixed", "mix"):
        keys, ids, W = w_matrix(train, ptype)
        if not keys:
            continue
        Ws[ptype] = keys, W
        pairs = token_pairs(train, train_tokens, ptype)
        tkeys, Wt = _token_matrix(pairs)
        assert tkeys == keys
        _, _, Wn = w_matrix(neutral, ptype)
        crosses = {t: w_matrix(df, ptype)[2] for t, df in traits.items()}
        for name, M in ((f"W_{ptype}", W), (f"W_{ptype}_tokens", Wt)):
            matrices[name] = np.ascontiguousarray(M, dtype=np.float32)
            meta["row_keys"][name] = keys
        meta["columns"][f"W_{ptype}"] = ids
        embs = {"": embed(W, n_components, seed), "_tokens": embed(Wt, n_components, seed)}
        for i, key in enumerate(keys):
            rec = {
                "prompt_key": key,
                "prompt_trait": prompt_traits.get(key, "neutral"),
                "prefix_type": ptype,
            }
            rec.update(row_stats(W[i]))
            rec.pop("ppd")  # PPD is defined on control completions, not the training set
            rec["ppd_neutral"] = row_stats(Wn[i])["ppd"] if len(Wn) else math.nan
            for t, Wc in crosses.items():
                st = row_stats(Wc[i]) if len(Wc) else dict.fromkeys(ROW_STATS, math.nan)
                rec[f"ph_{t}"], rec[f"ppd_{t}"] = st["ph"], st["ppd"]
            tok = Wt[i]
            rec["mean_abs_tok_diff"] = float(np.abs(tok).mean()) if tok.size else math.nan
            rec["mean_sq_tok_diff"] = float((tok**2).mean()) if tok.size else math.nan
            rec.update(gradient_stats(pairs[key], gradient))
            for suffix, e in embs.items():
                for c in range(n_components):
                    rec[f"pc{c + 1}{suffix}"] = float(e["pca"][i, c])
                    rec[f"sv{c + 1}{suffix}"] = float(e["svd"][i, c])
            rows.append(rec)
        for suffix, e in embs.items():
            matrix = f"W_{ptype}{suffix}"
            meta["explained_variance"][matrix] = {"pca": e["pca_var"], "svd": e["svd_var"]}
            for i, key in enumerate(keys):
                for method in ("pca", "svd"):
                    emb_rows.append(
                        {
                            "matrix": matrix,
                            "method": method,
                            "prompt_key": key,
                            "prompt_trait": prompt_traits.get(key, "neutral"),
                            **{f"dim{c + 1}": float(e[method][i, c]) for c in range(n_components)},
                        }
                    )
            reps = {
                "raw": W if not suffix else Wt,
                "pca2": e["pca"][:, :2],
                "svd2": e["svd"][:, :2],
            }
            groups = [prompt_traits.get(k, "neutral") for k in keys]
            for rep, X in reps.items():
                A = pairwise_angles(X)
                for i, a in enumerate(keys):
                    for j, b in enumerate(keys):
                        angle_rows.append(
                            {
                                "matrix": matrix,
                                "representation": rep,
                                "prompt_a": a,
                                "prompt_b": b,
                                "angle": float(A[i, j]),
                            }
                        )
                for g in angle_groups(A, groups):
                    summary_rows.append({"matrix": matrix, "representation": rep, **g})
    if not rows:
        raise ValueError("no fixed or mix prefix rows in the training logprob table")
    if len(Ws) == 2:
        _fixed_vs_mix(rows, Ws["fixed"], Ws["mix"])
    table = pl.DataFrame(rows).join(selfperp, on="prompt_key", how="left")
    if text_embeddings is not None:
        emb = text_embedding_vectors(text_embeddings)
        table = table.join(embedding_stats(*emb, prompt_traits), on="prompt_key", how="left")
    write_parquet(table, out_table)
    write_parquet(pl.DataFrame(emb_rows), out_embeddings)
    write_parquet(pl.DataFrame(angle_rows), out_angles)
    write_parquet(pl.DataFrame(summary_rows), out_angle_summary)
    with atomic_path(out_matrices) as tmp:
        save_file(matrices, str(tmp))
    write_json(meta, out_meta)
    return {"n_rows": table.height, "matrices": {k: list(v.shape) for k, v in matrices.items()}}


def _fixed_vs_mix(
    rows: list[dict],
    fixed: tuple[list[str], np.ndarray],
    mix: tuple[list[str], np.ndarray],
) -> None:
    """Add ``cos_fixed_mix`` (cosine of a prompt's W_fixed and W_mix rows) and ``ph_ratio``
    (PH_mix / PH_fixed) to its mix row: how close the rephrasings' signal is to the prompt's."""
    (fkeys, Wf), (mkeys, Wm) = fixed, mix
    ph = {(r["prompt_key"], r["prefix_type"]): r["ph"] for r in rows}
    for rec in rows:
        key = rec["prompt_key"]
        if rec["prefix_type"] != "mix" or key not in fkeys:
            continue
        f, m = Wf[fkeys.index(key)], Wm[mkeys.index(key)]
        ok = np.isfinite(f) & np.isfinite(m)
        rec["cos_fixed_mix"] = _cos(f[ok], m[ok])
        phf = ph[(key, "fixed")]
        rec["ph_ratio"] = rec["ph"] / phf if phf else math.nan


def text_embedding_vectors(
    df: pl.DataFrame,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(prompt vectors, rephrasing matrices)`` by prompt key from a text-embedding table.

    A prompt without its own vector (its embedding failed: the table has no row for it) is
    left out, so its :func:`embedding_stats` are NaN; failed rephrasings are simply absent.
    """
    prompts, reps = {}, {}
    for (key,), sub in df.sort("prompt_key", "index").group_by("prompt_key", maintain_order=True):
        p = sub.filter(pl.col("kind") == "prompt")["vector"].to_list()
        if len(p) > 1:
            raise ValueError(f"text embeddings: prompt {key!r} has {len(p)} prompt vectors, not 1")
        if not p:
            continue
        prompts[key] = np.asarray(p[0], dtype=np.float64)
        r = sub.filter(pl.col("kind") == "rephrasing")["vector"].to_list()
        reps[key] = np.asarray(r, dtype=np.float64).reshape(len(r), prompts[key].size)
    return prompts, reps


#: H7: z(elicitation) + z(token SVD PC1) + z(embedding distance from neutral) - z(rephrasing std).
COMPOSITE = {
    "elicitation": 1.0,
    "sv1_tokens": 1.0,
    "emb_dist_from_neutral": 1.0,
    "emb_rephrase_std_cos": -1.0,
}


def _z(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    sd = x[ok].std(ddof=1) if ok.sum() > 1 else 0.0
    return (x - x[ok].mean()) / sd if sd > 0 else np.full_like(x, math.nan)


#: Heuristic columns correlated with suppression (those present in the table are used).
CORRELATED = (
    *GRADIENT_STATS,
    *EMBEDDING_STATS,
    "composite",
    "cos_fixed_mix",
    "ph_ratio",
    "ph",
    "gamma",
    "sigma",
    "snr",
    "ppd_neutral",
    "mean_abs_tok_diff",
    "mean_sq_tok_diff",
    "pc1",
    "pc2",
    "sv1",
    "sv2",
    "pc1_tokens",
    "pc2_tokens",
    "sv1_tokens",
    "sv2_tokens",
    "selfperp_raw",
    "selfperp_context",
    "elicitation",
)


def correlate(heuristics: pl.DataFrame, suppression: pl.DataFrame) -> pl.DataFrame:
    """Pearson r of each heuristic vs measured suppression, per prefix type and suppressed trait.

    ``heuristics``: one row per (prompt_key, prefix_type) with heuristic columns (cross-trait
    ``ph_<T>``/``ppd_<T>`` columns are included too). ``suppression``: ``prompt_key,
    prefix_type, trait, suppression`` (final step, default condition), optionally with
    per-trait predictors such as ``elicitation``. Where elicitation, ``sv1_tokens`` and the
    embedding columns are all present, the H7 ``composite`` (:data:`COMPOSITE`, z-scored over
    the prompts of each prefix type and trait) is correlated too. Prompts trained both fixed
    and mix also give ``prefix_type = "gap"`` rows: the mix heuristics vs the fixed-minus-mix
    suppression gap.
    """
    joined = suppression.join(heuristics, on=["prompt_key", "prefix_type"], how="inner")
    fixed = suppression.filter(pl.col("prefix_type") == "fixed").select(
        "prompt_key", "trait", pl.col("suppression").alias("fixed")
    )
    gap = (
        joined.filter(pl.col("prefix_type") == "mix")
        .join(fixed, on=["prompt_key", "trait"])
        .with_columns(
            prefix_type=pl.lit("gap"), suppression=pl.col("fixed") - pl.col("suppression")
        )
        .drop("fixed")
    )
    cols = [c for c in joined.columns if c in CORRELATED or c.startswith(("ph_", "ppd_"))]
    if all(c in joined.columns for c in COMPOSITE):
        cols.append("composite")
    out = []
    for (ptype, trait), sub in pl.concat([joined, gap], how="diagonal_relaxed").group_by(
        ["prefix_type", "trait"], maintain_order=True
    ):
        if "composite" in cols:
            parts = [w * _z(sub[c].cast(pl.Float64).to_numpy()) for c, w in COMPOSITE.items()]
            sub = sub.with_columns(composite=np.sum(parts, axis=0))
        for c in cols:
            r, n = pearson(sub[c].cast(pl.Float64).to_numpy(), sub["suppression"].to_numpy())
            out.append({"prefix_type": ptype, "trait": trait, "heuristic": c, "r": r, "n": n})
    schema = {
        "prefix_type": pl.String,
        "trait": pl.String,
        "heuristic": pl.String,
        "r": pl.Float64,
        "n": pl.Int64,
    }
    return pl.DataFrame(out, schema=schema).sort("prefix_type", "trait", "heuristic")
