"""Stage ``inoculation_heuristics``: cheap base-model predictors of inoculation strength
(seed 003, experiments 11-20).

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
HB1-HB6 (:mod:`interpflow.inoculation.gradients`, including a simulated K-step training run).
From semantic text embeddings of each prompt and its rephrasings: rephrasing spread, distance
from the neutral prompts and cosine to each trait's prompts
(:mod:`interpflow.inoculation.embedding_stats`); with elicitation they form the H7 composite
(:mod:`interpflow.inoculation.correlations`, in the report stage).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import atomic_path, read_parquet, write_json, write_parquet
from interpflow.inoculation.embedding_stats import cosine, embedding_stats, text_embedding_vectors
from interpflow.inoculation.gradients import GradientConfig, gradient_stats
from interpflow.inoculation.study import InocPrompt


@dataclass(frozen=True)
class HeuristicsConfig:
    """PCA / TruncatedSVD of the W matrices and the gradient heuristics' thresholds
    (``inoculation.heuristics``)."""

    n_components: int = 3
    """Components kept per embedding."""
    seed: int = 0
    """random_state of PCA / TruncatedSVD."""
    gradient: GradientConfig = field(default_factory=GradientConfig)


#: Scalar heuristics of one W row (the keys of :func:`row_stats`).
ROW_STATS = ("ph", "gamma", "sigma", "snr", "ppd")

#: angle_summary.parquet's columns (experiment 19's pair kinds per W matrix and representation;
#: written even with no rows: one trained prompt has no pairs)
ANGLE_SUMMARY_SCHEMA = {
    "matrix": pl.String,
    "representation": pl.String,
    "pair": pl.String,
    "kind": pl.String,
    "mean": pl.Float64,
    "std": pl.Float64,
    "n": pl.Int64,
}


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


#: Per-token rows read at a time from the per-token table (:func:`read_token_deltas`).
TOKEN_BATCH_ROWS = 1 << 20
_PREFIX_TYPES = ("none", "fixed", "mix")


@dataclass(frozen=True)
class TokenDeltas:
    """The per-token logprobs of one training table as dense rows over its completion tokens.

    Columns: every completion token of every example, ordered by (example_id, token_index)
    (``example_ids`` sorted, ``lengths`` tokens each); ``values[0]`` is the no-prefix row,
    ``values[slots[(prefix_type, prompt_key)]]`` a prompt's row, in the table's logprob dtype.
    """

    example_ids: list[str]
    lengths: np.ndarray
    values: np.ndarray
    slots: dict[tuple[str, str], int]

    def keys(self, prefix_type: str) -> list[str]:
        """The prompt keys scored with ``prefix_type``, sorted."""
        return sorted(k for t, k in self.slots if t == prefix_type)

    def matrix(self, prefix_type: str) -> tuple[list[str], np.ndarray]:
        """``(prompt_keys, W_tokens)``: per-token logprob differences (prefix - no prefix) in
        float64, one row per prompt key, all completions concatenated."""
        keys = self.keys(prefix_type)
        if not keys:
            return [], np.zeros((0, 0))
        base = self.values[0].astype(np.float64)
        out = np.empty((len(keys), base.size))
        for i, k in enumerate(keys):  # row by row: no float32 copy of the block beside it
            np.subtract(self.values[self.slots[(prefix_type, k)]], base, out=out[i])
        return keys, out

    def pairs(self, prefix_type: str, key: str) -> pl.DataFrame:
        """One prompt's ``example_id, token_index, lp_base, lp_prefix`` (float64) of every
        completion token, sorted by (example_id, token_index): :func:`gradient_stats`' input."""
        lengths = self.lengths
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        return pl.DataFrame(
            {
                "example_id": pl.Series(self.example_ids, dtype=pl.String).gather(
                    np.repeat(np.arange(len(lengths)), lengths)
                ),
                "token_index": (np.arange(int(lengths.sum())) - starts).astype(np.int32),
                "lp_base": self.values[0].astype(np.float64),
                "lp_prefix": self.values[self.slots[(prefix_type, key)]].astype(np.float64),
            }
        )


def _token_layout(examples: pl.DataFrame) -> tuple[pl.DataFrame, dict[tuple[str, str], int]]:
    """The rows of ``examples`` with a prefix type none/fixed/mix, each with its ``slot`` (its
    condition's row of :attr:`TokenDeltas.values`) and ``start`` (its first token's column);
    and the slots. Every condition must score the no-prefix row's tokens of each example."""
    if "n_tokens" not in examples.columns:
        raise ValueError("per-example logprob table has no n_tokens column")
    ex = examples.filter(pl.col("prefix_type").is_in(_PREFIX_TYPES)).with_row_index("row")
    base = ex.filter(pl.col("prefix_type") == "none").sort("example_id")
    if base.height == 0:
        raise ValueError("logprob table has no 'none' (no prefix) rows to difference against")
    if base["example_id"].n_unique() != base.height:
        raise ValueError("logprob table: an example_id has several 'none' (no prefix) rows")
    conds = ex.filter(pl.col("prefix_type") != "none").select("prefix_type", "prompt_key")
    conds = conds.unique().sort("prefix_type", "prompt_key").rows()
    slots = {c: i + 1 for i, c in enumerate(conds)}
    base = base.select(
        "example_id",
        pl.col("n_tokens").cast(pl.Int64).alias("base_tokens"),
        (pl.col("n_tokens").cast(pl.Int64).cum_sum() - pl.col("n_tokens")).alias("start"),
    )
    ex = ex.join(base, on="example_id", how="left").sort("row")
    bad = ex.filter(pl.col("base_tokens").is_null() | (pl.col("n_tokens") != pl.col("base_tokens")))
    if bad.height:
        raise ValueError(
            f"prompts scored different token counts: {bad.height} rows differ from the no-prefix "
            f"row of their example (e.g. {bad['row_id'][0]})"
        )
    slot = [
        0 if t == "none" else slots[(t, k)]
        for t, k in ex.select("prefix_type", "prompt_key").rows()
    ]
    return ex.with_columns(slot=pl.Series(slot, dtype=pl.Int64)), slots


def _token_batches(tokens: str | Path | pl.DataFrame, batch_rows: int):
    """``(logprob dtype, iterator of arrow record batches of row_id, token_index, logprob)``."""
    import pyarrow.parquet as pq

    cols = ["row_id", "token_index", "logprob"]
    if isinstance(tokens, pl.DataFrame):
        table = tokens.select(cols).to_arrow()
        return table.schema.field("logprob").type, iter(table.to_batches(max_chunksize=batch_rows))
    reader = pq.ParquetFile(tokens)
    lp_type = reader.schema_arrow.field("logprob").type
    return lp_type, reader.iter_batches(batch_size=batch_rows, columns=cols)


def read_token_deltas(
    *,
    examples: pl.DataFrame,
    tokens: str | Path | pl.DataFrame,
    batch_rows: int | None = None,
) -> TokenDeltas:
    """Stream the per-token table ``tokens`` (a parquet path, or a frame) ``batch_rows`` rows
    (default :data:`TOKEN_BATCH_ROWS`) at a time into :class:`TokenDeltas`: memory is the
    dense rows (conditions x completion tokens), never the table or a join of it.
    ``examples``: the per-example table (``row_id``, ``prefix_type``, ``prompt_key``,
    ``example_id``, ``n_tokens``); token rows of other row ids are skipped, and each row's
    token rows must be exactly its ``n_tokens``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ex, slots = _token_layout(examples)
    base = ex.filter(pl.col("prefix_type") == "none").sort("example_id")
    lengths = base["n_tokens"].cast(pl.Int64).to_numpy()
    row_of = dict(zip(ex["row_id"].to_list(), range(ex.height)))
    slot, start = ex["slot"].to_numpy(), ex["start"].to_numpy()
    n_tok = ex["n_tokens"].cast(pl.Int64).to_numpy()
    lp_type, batches = _token_batches(tokens, batch_rows or TOKEN_BATCH_ROWS)
    dtype = np.float32 if lp_type in (pa.float16(), pa.float32()) else np.float64
    values = np.full((len(slots) + 1, int(lengths.sum())), np.nan, dtype)
    seen = np.zeros(ex.height, np.int64)
    for batch in batches:
        enc = pc.dictionary_encode(batch.column("row_id"))
        lut = np.array([row_of.get(r, -1) for r in enc.dictionary.to_pylist()] + [-1], np.int64)
        rows = lut[enc.indices.fill_null(len(lut) - 1).to_numpy()]
        ti = batch.column("token_index").to_numpy().astype(np.int64)
        lp = batch.column("logprob").to_numpy().astype(dtype, copy=False)
        keep = rows >= 0
        rows, ti, lp = rows[keep], ti[keep], lp[keep]
        if ((ti < 0) | (ti >= n_tok[rows])).any():
            raise ValueError(f"{_name(tokens)}: a token_index beyond its row's n_tokens")
        values[slot[rows], start[rows] + ti] = lp
        seen += np.bincount(rows, minlength=ex.height)
    off = np.flatnonzero(seen != n_tok)
    if off.size:
        r = int(off[0])
        raise ValueError(
            f"{_name(tokens)}: {off.size} rows have token rows other than their n_tokens "
            f"(e.g. {ex['row_id'][r]}: {seen[r]} token rows, n_tokens {n_tok[r]})"
        )
    return TokenDeltas(
        example_ids=base["example_id"].to_list(), lengths=lengths, values=values, slots=slots
    )


def _name(tokens: str | Path | pl.DataFrame) -> str:
    return "per-token table" if isinstance(tokens, pl.DataFrame) else str(tokens)


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


def orient(scores: np.ndarray, components: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give each component a sign by a stated rule, not the solver's arbitrary one.

    Component k (a row of ``components``, its loadings over W's columns) is flipped so that its
    loadings sum to a non-negative number: moving along +PCk / +SVk raises a prompt's mean W
    entry (its mean log-prob uplift, PH for the datapoint matrix). Where the sum is zero (to
    1e-9 of the loadings' L1 norm) the largest-magnitude loading is made positive. Returns
    the oriented (scores, components); a solver that returns (-s, -v) gets the same answer.
    """
    scores, components = np.array(scores, dtype=np.float64), np.array(components, np.float64)
    for k, v in enumerate(components):
        total = v.sum()
        if abs(total) > 1e-9 * np.abs(v).sum():
            flip = total < 0
        else:
            flip = v[np.argmax(np.abs(v))] < 0
        if flip:
            scores[:, k], components[k] = -scores[:, k], -v
    return scores, components


def embed(W: np.ndarray, n_components: int = 3, seed: int = 0) -> dict:
    """PCA and TruncatedSVD of ``W``'s rows, with explained-variance ratios.

    ``n_components`` is capped by the matrix rank limits (PCA: min(n_rows - 1, n_cols);
    TruncatedSVD: min(n_rows, n_cols) - 1, at least 1). Missing components are NaN columns.
    Each component is oriented by :func:`orient` (+PCk raises the mean W entry), so H3, H4,
    H9b, H10 and the H7 composite keep their sign across datasets and solver versions.
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
        out["pca"][:, :k_pca] = orient(pca.transform(W), pca.components_)[0]
        out["pca_var"][:k_pca] = pca.explained_variance_ratio_.tolist()
    k_svd = min(n_components, max(min(n, d) - 1, 1))
    if d >= 2 and n >= 2:  # one row has no variance to explain
        svd = TruncatedSVD(
            n_components=k_svd,
            random_state=seed,
            algorithm="arpack" if k_svd < min(n, d) else "randomized",
        )
        out["svd"][:, :k_svd] = orient(svd.fit_transform(W), svd.components_)[0]
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


def compute_heuristics(
    *,
    train: pl.DataFrame,
    train_tokens: str | Path | pl.DataFrame,
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
    gradient: GradientConfig | None = None,
    n_components: int = 3,
    seed: int = 0,
) -> dict:
    """All heuristics for every prompt x prefix type (fixed, mix); writes six artifacts.

    ``train``/``neutral``/``traits[T]`` are per-example logprob tables of the SFT set, the
    neutral controls and trait T's trait-only completions; ``train_tokens`` the per-token
    table of the SFT set (a parquet path, streamed by :func:`read_token_deltas`, or a frame);
    ``selfperp`` has ``prompt_key, selfperp_raw, selfperp_context``;
    ``prompt_traits`` maps prompt key -> trait name (or "neutral"). ``text_embeddings``
    (optional; ``prompt_key, kind`` = prompt/rephrasing, ``vector``) adds the
    :func:`embedding_stats` columns, the same for both prefix types. ``gradient``: the
    gradient heuristics' thresholds (``None``: the defaults).
    """
    from safetensors.numpy import save_file

    deltas = read_token_deltas(examples=train, tokens=train_tokens)
    groups = {k: prompt_traits.get(k, "neutral") for k in {k for _, k in deltas.slots}}
    rows, emb_rows, angle_rows, summary_rows = [], [], [], []
    matrices: dict[str, np.ndarray] = {}
    meta: dict = {"explained_variance": {}, "row_keys": {}, "columns": {}}
    Ws: dict[str, tuple[list[str], np.ndarray]] = {}
    for ptype in ("fixed", "mix"):
        keys, ids, W = w_matrix(train, ptype)
        if not keys:
            continue
        Ws[ptype] = keys, W
        tkeys, Wt = deltas.matrix(ptype)
        if tkeys != keys:
            raise ValueError(f"{ptype} prompts {keys} but per-token rows of {tkeys}")
        for name, M in ((f"W_{ptype}", W), (f"W_{ptype}_tokens", Wt)):
            matrices[name] = np.ascontiguousarray(M, dtype=np.float32)
            meta["row_keys"][name] = keys
        meta["columns"][f"W_{ptype}"] = ids
        embs = {"": embed(W, n_components, seed), "_tokens": embed(Wt, n_components, seed)}
        controls = {t: w_matrix(df, ptype)[2] for t, df in {"neutral": neutral, **traits}.items()}
        rows += _prompt_rows(
            ptype=ptype, keys=keys, W=W, Wt=Wt, controls=controls, deltas=deltas, embs=embs,
            groups=groups, gradient=gradient or GradientConfig(), n_components=n_components,
        )  # fmt: skip
        for suffix, e in embs.items():
            matrix = f"W_{ptype}{suffix}"
            meta["explained_variance"][matrix] = {"pca": e["pca_var"], "svd": e["svd_var"]}
            emb_rows += _embedding_rows(matrix, keys, e, groups, n_components)
            angles, summary = _angle_rows(matrix, keys, Wt if suffix else W, e, groups)
            angle_rows += angles
            summary_rows += summary
        del Wt, embs  # one prefix type's dense token matrix at a time
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
    write_parquet(pl.DataFrame(summary_rows, schema=ANGLE_SUMMARY_SCHEMA), out_angle_summary)
    with atomic_path(out_matrices) as tmp:
        save_file(matrices, str(tmp))
    write_json(meta, out_meta)
    return {"n_rows": table.height, "matrices": {k: list(v.shape) for k, v in matrices.items()}}


def _prompt_rows(
    *,
    ptype: str,
    keys: list[str],
    W: np.ndarray,
    Wt: np.ndarray,
    controls: Mapping[str, np.ndarray],
    deltas: TokenDeltas,
    embs: Mapping[str, dict],
    groups: Mapping[str, str],
    gradient: GradientConfig,
    n_components: int,
) -> list[dict]:
    """One heuristics row per prompt key of prefix type ``ptype``: :func:`row_stats` of its W
    row, PPD on the neutral controls and PH/PPD on each trait's (``controls``: their W
    matrices), the per-token and gradient heuristics, and its PCA/SVD coordinates."""
    rows = []
    for i, key in enumerate(keys):
        rec = {"prompt_key": key, "prompt_trait": groups[key], "prefix_type": ptype}
        rec.update(row_stats(W[i]))
        rec.pop("ppd")  # PPD is defined on control completions, not the training set
        for t, Wc in controls.items():
            st = row_stats(Wc[i]) if len(Wc) else dict.fromkeys(ROW_STATS, math.nan)
            if t == "neutral":
                rec["ppd_neutral"] = st["ppd"]
            else:
                rec[f"ph_{t}"], rec[f"ppd_{t}"] = st["ph"], st["ppd"]
        tok = Wt[i]
        rec["mean_abs_tok_diff"] = float(np.abs(tok).mean()) if tok.size else math.nan
        rec["mean_sq_tok_diff"] = float((tok**2).mean()) if tok.size else math.nan
        rec.update(gradient_stats(deltas.pairs(ptype, key), gradient))
        for suffix, e in embs.items():
            for c in range(n_components):
                rec[f"pc{c + 1}{suffix}"] = float(e["pca"][i, c])
                rec[f"sv{c + 1}{suffix}"] = float(e["svd"][i, c])
        rows.append(rec)
    return rows


def _embedding_rows(
    matrix: str, keys: list[str], e: dict, groups: Mapping[str, str], n_components: int
) -> list[dict]:
    """Rows of the embeddings table: each prompt's PCA and SVD coordinates of ``matrix``."""
    return [
        {
            "matrix": matrix,
            "method": method,
            "prompt_key": key,
            "prompt_trait": groups[key],
            **{f"dim{c + 1}": float(e[method][i, c]) for c in range(n_components)},
        }
        for i, key in enumerate(keys)
        for method in ("pca", "svd")
    ]


def _angle_rows(
    matrix: str, keys: list[str], raw: np.ndarray, e: dict, groups: Mapping[str, str]
) -> tuple[list[dict], list[dict]]:
    """Rows of the angles table (every prompt pair) and of its summary (:func:`angle_groups`)
    of ``matrix``, on its raw rows and on its top-2 PCA and SVD projections ``e``."""
    angles, summary = [], []
    for rep, X in {"raw": raw, "pca2": e["pca"][:, :2], "svd2": e["svd"][:, :2]}.items():
        A = pairwise_angles(X)
        angles += [
            {"matrix": matrix, "representation": rep, "prompt_a": a, "prompt_b": b,
             "angle": float(A[i, j])}
            for i, a in enumerate(keys)
            for j, b in enumerate(keys)
        ]  # fmt: skip
        summary += [
            {"matrix": matrix, "representation": rep, **g}
            for g in angle_groups(A, [groups[k] for k in keys])
        ]
    return angles, summary


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
        rec["cos_fixed_mix"] = cosine(f[ok], m[ok])
        phf = ph[(key, "fixed")]
        rec["ph_ratio"] = rec["ph"] / phf if phf else math.nan


def heuristics_stage(
    *,
    train: str | Path,
    train_tokens: str | Path,
    neutral: str | Path,
    traits: str | Path,
    trait_names: Sequence[str],
    selfperp: str | Path,
    text_embeddings: str | Path | None = None,
    prompts: Mapping[str, InocPrompt],
    cfg: HeuristicsConfig = HeuristicsConfig(),
    out_table: str | Path,
    out_embeddings: str | Path,
    out_angles: str | Path,
    out_angle_summary: str | Path,
    out_matrices: str | Path,
    out_meta: str | Path,
) -> dict:
    """Read the per-example logprob tables (the SFT set ``train``, the ``neutral`` controls,
    the trait-only sets ``traits``: dataset ``trait_<T>`` for each of ``trait_names``), the
    SFT set's per-token table ``train_tokens``, the self-perplexities ``selfperp`` and
    optionally the ``text_embeddings``; run :func:`compute_heuristics`."""
    trait_table = read_parquet(traits)
    per_trait = {t: trait_table.filter(pl.col("dataset") == f"trait_{t}") for t in trait_names}
    empty = [t for t, df in per_trait.items() if df.height == 0]
    if empty:
        raise ValueError(f"{traits}: no rows of the trait-only sets of {empty}")
    return compute_heuristics(
        train=read_parquet(train),
        train_tokens=Path(train_tokens),
        neutral=read_parquet(neutral),
        traits=per_trait,
        selfperp=read_parquet(selfperp),
        prompt_traits={k: p.trait for k, p in prompts.items()},
        out_table=out_table,
        out_embeddings=out_embeddings,
        out_angles=out_angles,
        out_angle_summary=out_angle_summary,
        out_matrices=out_matrices,
        out_meta=out_meta,
        text_embeddings=read_parquet(text_embeddings) if text_embeddings else None,
        gradient=cfg.gradient,
        n_components=cfg.n_components,
        seed=cfg.seed,
    )
