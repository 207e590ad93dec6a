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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def w_tokens(
    examples: pl.DataFrame, tokens: pl.DataFrame, prefix_type: str
) -> tuple[list[str], np.ndarray]:
    """``(prompt_keys, W_tokens)``: per-token logprob differences, all completions concatenated.

    Column order is (example_id, token_index); every prompt scores the same completion tokens.
    """
    tok = tokens.join(
        examples.select("row_id", "prefix_type", "prompt_key", "example_id"), on="row_id"
    )
    base = tok.filter(pl.col("prefix_type") == "none").select(
        "example_id", "token_index", pl.col("logprob").alias("base")
    )
    pre = tok.filter(pl.col("prefix_type") == prefix_type)
    if pre.height == 0:
        return [], np.zeros((0, base.height))
    diff = pre.join(base, on=["example_id", "token_index"]).with_columns(
        (pl.col("logprob").cast(pl.Float64) - pl.col("base")).alias("w")
    )
    keys = sorted(diff["prompt_key"].unique().to_list())
    rows = []
    for key in keys:
        sub = diff.filter(pl.col("prompt_key") == key).sort("example_id", "token_index")
        rows.append(sub["w"].to_numpy())
    width = {len(r) for r in rows}
    if len(width) != 1:
        raise ValueError(f"prompts scored different token counts: {sorted(width)}")
    return keys, np.vstack(rows)


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
    if d >= 2:
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
    n_components: int = 3,
    seed: int = 0,
) -> dict:
    """All heuristics for every prompt x prefix type (fixed, mix); writes six artifacts.

    ``train``/``neutral``/``traits[T]`` are per-example logprob tables of the SFT set, the
    neutral controls and trait T's trait-only completions; ``train_tokens`` the per-token
    table of the SFT set; ``selfperp`` has ``prompt_key, selfperp_raw, selfperp_context``;
    ``prompt_traits`` maps prompt key -> trait name (or "neutral").
    """
    from safetensors.numpy import save_file

    from interpflow.artifacts import atomic_path

    rows, emb_rows, angle_rows, summary_rows = [], [], [], []
    matrices: dict[str, np.ndarray] = {}
    meta: dict = {"explained_variance": {}, "row_keys": {}, "columns": {}}
    for ptype in ("fixed", "mix"):
        keys, ids, W = w_matrix(train, ptype)
        if not keys:
            continue
        tkeys, Wt = w_tokens(train, train_tokens, ptype)
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
    table = pl.DataFrame(rows).join(selfperp, on="prompt_key", how="left")
    write_parquet(table, out_table)
    write_parquet(pl.DataFrame(emb_rows), out_embeddings)
    write_parquet(pl.DataFrame(angle_rows), out_angles)
    write_parquet(pl.DataFrame(summary_rows), out_angle_summary)
    with atomic_path(out_matrices) as tmp:
        save_file(matrices, str(tmp))
    write_json(meta, out_meta)
    return {"n_rows": table.height, "matrices": {k: list(v.shape) for k, v in matrices.items()}}


#: Heuristic columns correlated with suppression (those present in the table are used).
CORRELATED = (
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
    per-trait predictors such as ``elicitation``.
    """
    joined = suppression.join(heuristics, on=["prompt_key", "prefix_type"], how="inner")
    cols = [c for c in joined.columns if c in CORRELATED or c.startswith(("ph_", "ppd_"))]
    out = []
    for (ptype, trait), sub in joined.group_by(["prefix_type", "trait"], maintain_order=True):
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
