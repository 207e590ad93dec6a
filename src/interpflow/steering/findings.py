"""Stage ``findings``: the headline of seed 004 beside its controls (no model).

Per adapter family, the shift of the persona-signed Yes/No log-ratio (``logratio_signed`` =
(log p(Yes) − log p(No)) · label, larger = the positive persona's answer) between
``base + α_max·dW`` and ``base + α_min·dW`` (α = +1 and −1 in the shipped configs), question by
question on held-out eval questions, with a paired bootstrap CI over questions. Controls, each
with its own shift and the paired margin of dW over it on the same questions:

- ``random dW`` (method ``random`` of the eval stage): a seeded random dW with dW's per-matrix
  Frobenius norms, at the same α's: a perturbation as large as dW in no trained direction;
- ``RepE``: the persona mean difference added to the residual stream at the same α's, as
  ``baselines.repe_form`` applies α (repeng, the default: α times the unit direction at every
  block's output; cumulative: block l's output moved by α·d_l);
- ``RepE (PCA)``: repeng's PCA reader, the same α's and form (cumulative: at the mean
  difference's per-layer norms);
- ``prompt``: the positive minus the negative system prompt of ``prompt_pair`` (the persona put
  in the prompt instead of the weights).

With ``findings.heldout_set`` (e.g. ``heldout``: questions of another kind than the training
and the in-distribution eval questions), each family also gets the same shift on that set, beside
the same controls measured there and the in-distribution shift (out of distribution: does the
headline hold where nothing was trained or chosen?).

Every number comes from the eval-row parquets the eval and baselines stages write
(:data:`~interpflow.steering.common.EVAL_SCHEMA`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet
from interpflow.findings import Control, Finding, write
from interpflow.steering.common import per_unit

CI_METHOD = "paired percentile bootstrap over questions (a dilemma's two actions as one)"


@dataclass(frozen=True)
class FindingsConfig:
    """Config key ``findings``: which eval set, which prompt pair, the bootstrap."""

    eval_set: str | None = None  # None = the first set of eval.sets
    heldout_set: str | None = None  # a set of eval.sets of another kind: one more row per family
    prompt_pair: tuple[str, str] = ("engineered_honest", "engineered_dishonest")
    n_bootstrap: int = 2000
    seed: int = 0


def bootstrap_mean(values: np.ndarray, n_bootstrap: int, seed: int) -> tuple[float, float]:
    """95% percentile CI of the mean of ``values`` (one per question), resampling questions."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, values.size, (n_bootstrap, values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def per_question(rows: pl.DataFrame, eval_set: str) -> pl.DataFrame:
    """``row_id, alpha, variant, method -> logratio_signed`` of one eval set, one row per unit
    (:func:`~interpflow.steering.common.per_unit`: a daily dilemma's two actions averaged into
    one paired value; a question its own): the bootstrap resamples units."""
    sel = rows.filter(pl.col("eval_set") == eval_set)
    return per_unit(sel, ["method", "variant", "alpha"], ["logratio_signed"]).select(
        "method", "variant", "alpha", "row_id", "logratio_signed"
    )


def shift(rows: pl.DataFrame, method: str, variant: str, hi: float, lo: float) -> pl.DataFrame:
    """Per question: ``logratio_signed`` at α = ``hi`` minus at α = ``lo`` (column ``shift``)."""
    sel = rows.filter((pl.col("method") == method) & (pl.col("variant") == variant))
    a = sel.filter(pl.col("alpha") == hi).select("row_id", a=pl.col("logratio_signed"))
    b = sel.filter(pl.col("alpha") == lo).select("row_id", b=pl.col("logratio_signed"))
    return a.join(b, on="row_id").select("row_id", shift=pl.col("a") - pl.col("b"))


def _control(
    name: str, headline: pl.DataFrame, other: pl.DataFrame, cfg: FindingsConfig
) -> Control:
    """A control's own shift (CI) and the headline's paired margin over it (same questions)."""
    if other.height == 0:
        return Control(name=name)
    both = headline.join(other.rename({"shift": "ctl"}), on="row_id")
    ctl, diff = other["shift"].to_numpy(), (both["shift"] - both["ctl"]).to_numpy()
    return Control(
        name=name,
        value=float(ctl.mean()),
        ci=bootstrap_mean(ctl, cfg.n_bootstrap, cfg.seed),
        margin=float(diff.mean()) if diff.size else None,
        margin_ci=bootstrap_mean(diff, cfg.n_bootstrap, cfg.seed) if diff.size else None,
    )


def family_finding(
    rows: pl.DataFrame,
    family: str,
    *,
    instance: str,
    model: str,
    eval_set: str,
    cfg: FindingsConfig,
    in_distribution: Finding | None = None,
) -> Finding:
    """The α_max − α_min shift of ``family``'s dW with its controls; given the
    ``in_distribution`` row of the same family, this is the held-out row: its text says so and
    that row's shift stands beside the controls (other questions: no paired margin)."""
    weight = rows.filter((pl.col("method") == "weight") & (pl.col("variant") == family))
    alphas = weight["alpha"].unique().to_list()
    hi, lo = max(alphas), min(alphas)
    head = shift(rows, "weight", family, hi, lo)
    values = head["shift"].to_numpy()
    ci = bootstrap_mean(values, cfg.n_bootstrap, cfg.seed)
    pos, neg = cfg.prompt_pair
    prompt = rows.filter(pl.col("method") == "prompt")
    p_pos = prompt.filter(pl.col("variant") == pos).select("row_id", a=pl.col("logratio_signed"))
    p_neg = prompt.filter(pl.col("variant") == neg).select("row_id", b=pl.col("logratio_signed"))
    prompt_shift = p_pos.join(p_neg, on="row_id").select("row_id", shift=pl.col("a") - pl.col("b"))
    controls = [
        _control("random dW", head, shift(rows, "random", family, hi, lo), cfg),
        _control("RepE", head, shift(rows, "repe", "all_layers", hi, lo), cfg),
        _control("RepE (PCA)", head, shift(rows, "repe_pca", "all_layers", hi, lo), cfg),
        _control(f"prompt {pos} - {neg}", head, prompt_shift, cfg),
    ]
    if in_distribution is not None:
        controls.append(
            Control(
                name="the same dW on the in-distribution set",
                value=in_distribution.value,
                ci=in_distribution.ci,
            )
        )
    random = controls[0]
    where = (
        f"on held-out questions ({eval_set})"
        if in_distribution is None
        else f"on questions of another kind, out of distribution ({eval_set})"
    )
    holds = bool(
        values.size
        and ci[0] > 0
        and (
            random.margin_ci is None
            or (random.margin_ci[0] is not None and random.margin_ci[0] > 0)
        )
    )
    return Finding(
        study="steering",
        instance=instance,
        model=model,
        finding=(
            f"{family} dW moves the persona-signed Yes/No log-ratio in the trained direction "
            + where
        ),
        metric=f"{family} dW: mean shift of signed log-ratio, alpha {hi:+g} minus {lo:+g}"
        + ("" if in_distribution is None else f", out of distribution ({eval_set})"),
        value=float(values.mean()) if values.size else float("nan"),
        ci=ci,
        n=int(values.size),
        expect="CI above 0, and the margin over a random dW of the same norms CI above 0",
        holds=holds,
        controls=controls,
        null=0.0,
    )


def steering_findings(
    *,
    evals: Sequence[str | Path],
    baselines: Sequence[str | Path],
    families: Sequence[str],
    out: str | Path,
    instance: str,
    model: str,
    config: FindingsConfig,
) -> list[Finding]:
    """One finding per family (``results/steering/<instance>/findings.json``), then with
    ``config.heldout_set`` one held-out row per family (:func:`family_finding`)."""
    rows = pl.concat(
        [read_parquet(p).select(_COLUMNS) for p in [*evals, *baselines]], how="vertical"
    )
    sets = rows["eval_set"].unique(maintain_order=True).to_list()
    eval_set = config.eval_set or sets[0]
    for key, name in (("eval_set", eval_set), ("heldout_set", config.heldout_set)):
        if name is not None and name not in sets:
            raise ValueError(
                f"findings.{key} {name!r} is not an evaluated set (have {', '.join(sets)})"
            )
    if config.heldout_set == eval_set:
        raise ValueError(f"findings.heldout_set {eval_set!r} is the findings' own eval set")
    on = {"instance": instance, "model": model, "cfg": config}
    findings = [
        family_finding(per_question(rows, eval_set), f, eval_set=eval_set, **on) for f in families
    ]
    if config.heldout_set is not None:
        held = per_question(rows, config.heldout_set)
        findings += [
            family_finding(held, f, eval_set=config.heldout_set, in_distribution=row, **on)
            for f, row in zip(families, findings, strict=True)
        ]
    write(out, findings)
    return findings


_COLUMNS = ["method", "variant", "alpha", "eval_set", "row_id", "logratio_signed"]
