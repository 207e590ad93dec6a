"""Stage ``inoculation_elicitation``: seed 003's standalone elicitation screen. The untrained
model answers the eval instructions with no prefix (default), with every prompt of the study
file as a user-turn prefix (``prefix_type`` fixed) and, given the rephrasing table, with one of
the prompt's rephrasings per instruction as the prefix (``prefix_type`` mix: the seed's v3
elicitation, measured on the mix run's step 0); each trait is judged on every completion; a
prompt's elicitation of a trait per prefix type = prefixed − default score, paired by eval
item (mean ± 1.96·SE of the paired differences), in points of the 0-100 score (the seed's
"relative pp")."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from interpflow.artifacts import read_parquet, stable_hash, write_parquet
from interpflow.inoculation.common import condition_turns, read_lines
from interpflow.inoculation.eval import EvalConfig, completion_rows, eval_backend
from interpflow.inoculation.judging import judge_traits, scores_frame
from interpflow.inoculation.scores import mean_ci
from interpflow.inoculation.study import InocPrompt


def elicitation_completions(
    *,
    eval_instructions: str | Path,
    n_eval: int,
    prompts: Mapping[str, InocPrompt],
    default_system: str | None,
    model,
    cfg: EvalConfig,
    threads: int | None = None,
    rephrasings: str | Path | pl.DataFrame | None = None,
    out: str | Path,
) -> dict:
    """The base model's completions of the first ``n_eval`` eval instructions with no prefix
    (``prompt_key`` and ``prefix_type`` null, ``condition`` default), under each prompt as a
    fixed user-turn prefix (``condition`` prefixed, ``prefix_type`` fixed) and, with the
    ``rephrasings`` table, under a rephrasing of each prompt drawn per instruction as the mix
    runs draw theirs (``prefix_type`` mix, :func:`condition_turns` with ``cfg.seed``); one
    model load. Writes ``out`` in the eval tables' form (``run`` = ``base``, ``step`` 0,
    ``eval_set`` trait)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    instructions = read_lines(eval_instructions, n_eval, "eval set 'trait'")
    backend = eval_backend(model, cfg)
    backend.use(None, "base")
    if isinstance(rephrasings, (str, Path)):
        rephrasings = read_parquet(rephrasings)
    types = ("fixed", "mix") if rephrasings is not None else ("fixed",)
    conditions = [(None, None, [(default_system, i, None) for i in instructions])] + [
        (key, pt, condition_turns(
            f"{key}-{pt}", instructions, prompts, rephrasings, default_system, cfg.seed
        ))
        for pt in types for key in prompts
    ]  # fmt: skip
    rows = []
    for key, ptype, turns in conditions:
        # the fixed prefix keeps the seed it had before the mix prefixes came in
        tag = key if ptype in (None, "fixed") else [key, ptype]
        seed = int(stable_hash([cfg.seed, "elicitation", tag], 8), 16) % (2**31 - 1)
        texts = backend.generate([(s, u) for s, u, _ in turns], cfg, seed)
        keys = {
            "run": "base",
            "step": 0,
            "condition": "default" if key is None else "prefixed",
            "prompt_key": key,
            "prefix_type": ptype,
            "eval_set": "trait",
        }
        rows += completion_rows(keys, turns, instructions, texts)
    df = pl.DataFrame(
        rows,
        schema_overrides={
            "system": pl.String,
            "prompt_key": pl.String,
            "prefix_type": pl.String,
            "step": pl.Int32,
            "item_id": pl.Int32,
        },
    )
    write_parquet(df, out)
    return {"n_prompts": len(prompts), "prefix_types": list(types), "n": df.height}


def elicitation_table(scores: pl.DataFrame, prompts: Mapping[str, InocPrompt]) -> pl.DataFrame:
    """Per prompt, prefix type and trait: the default and prefixed mean scores and the
    elicitation (prefixed − default, paired by eval item: mean and 95% CI of the differences,
    ``n`` pairs). ``scores``: ``prompt_key`` (null = default), ``prefix_type`` (fixed / mix;
    a table without it is all fixed), ``item_id``, ``metric``, ``score``."""
    if "prefix_type" not in scores.columns:
        scores = scores.with_columns(prefix_type=pl.lit("fixed"))
    scores = scores.with_columns(
        prefix_type=pl.when(pl.col("prompt_key").is_null())
        .then(None)
        .otherwise(pl.col("prefix_type").fill_null("fixed"))
    )
    default = scores.filter(pl.col("prompt_key").is_null()).select(
        "item_id", "metric", pl.col("score").alias("default")
    )
    pairs = scores.filter(pl.col("prompt_key").is_not_null()).join(
        default, on=["item_id", "metric"], how="inner"
    )
    rows = []
    groups = pairs.group_by(["prompt_key", "prefix_type", "metric"], maintain_order=True)
    for (key, ptype, trait), sub in groups:
        diff = mean_ci((sub["score"] - sub["default"]).to_list())
        p = prompts[key]
        rows.append(
            {
                "prompt_key": key,
                "prefix_type": ptype,
                "prompt_trait": p.trait,
                "group": p.group,
                "text": p.text,
                "trait": trait,
                "default": mean_ci(sub["default"].to_list())["mean"],
                "prefixed": mean_ci(sub["score"].to_list())["mean"],
                "elicitation": diff["mean"],
                "ci_low": diff["ci_low"],
                "ci_high": diff["ci_high"],
                "n": diff["n"],
            }
        )
    order = {k: i for i, k in enumerate(prompts)}
    return pl.DataFrame(rows).sort(
        pl.col("trait"),
        pl.col("prefix_type"),
        pl.col("prompt_key").replace_strict(order, return_dtype=pl.Int64),
    )


def fig_elicitation(table: pl.DataFrame, png: str | Path, csv: str | Path) -> pl.DataFrame:
    """One panel per judged trait x prefix type (fixed, mix): each prompt's elicitation
    (horizontal bar, paired 95% CI), prompts sorted by it and coloured by the trait they name."""
    from interpflow.figures import plt, save_png, sns, write_csv

    panels = table.select("trait", "prefix_type").unique(maintain_order=True).rows()
    n = table["prompt_key"].n_unique()
    fig, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(5.5 * max(len(panels), 1), 0.22 * n + 1.8),
        squeeze=False,
    )  # fmt: skip
    names = sorted(set(table["prompt_trait"]))
    pal = dict(zip(names, sns.color_palette("tab10", len(names))))
    for ax, (trait, ptype) in zip(axes[0], panels):
        sub = table.filter((pl.col("trait") == trait) & (pl.col("prefix_type") == ptype))
        sub = sub.sort("elicitation")
        y = range(sub.height)
        ax.barh(
            list(y),
            sub["elicitation"].to_list(),
            xerr=[
                (sub["elicitation"] - sub["ci_low"]).to_list(),
                (sub["ci_high"] - sub["elicitation"]).to_list(),
            ],
            color=[pal[t] for t in sub["prompt_trait"]],
            capsize=2,
        )
        ax.set_yticks(list(y), sub["prompt_key"].to_list(), fontsize=6)
        ax.axvline(0, color="grey", lw=0.8)
        base = sub["default"].drop_nans().mean() if sub.height else float("nan")
        ax.set_title(
            f"{trait} elicitation, {ptype} prefix (base model; default {base:.1f})", fontsize=9
        )
        ax.set_xlabel("prefixed - default score (points, paired 95% CI)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=pal[t]) for t in names]
    axes[0][-1].legend(handles, names, title="prompt names", fontsize="x-small")
    save_png(fig, png, dpi=120)
    write_csv(table, csv)
    return table


def elicitation_stage(
    *,
    completions: str | Path,
    prompts: Mapping[str, InocPrompt],
    traits: Mapping[str, Mapping],
    trait_judge,
    cache: str | Path | None,
    min_mass: float,
    scale: str,
    out_scores: str | Path,
    out_table: str | Path,
    png: str | Path,
    csv: str | Path,
    scale_key: str = "inoculation.judges.trait_scale",
) -> dict:
    """Judge every trait on the screen's ``completions``; write the scores, the elicitation
    table (:func:`elicitation_table`) and its figure ``png`` with the CSV ``csv``. ``scale``:
    the judge's answer scale, the config key ``scale_key`` (named where it does not suit the
    judge's tokenizer)."""
    table = read_parquet(completions)
    judgements, stats = judge_traits(
        table, traits, trait_judge, cache, scale, min_mass, scale_key=scale_key
    )
    extra = ("prompt_key", "prefix_type") if "prefix_type" in table.columns else ("prompt_key",)
    scores = scores_frame(judgements, min_mass, scale, extra=extra)
    write_parquet(scores, out_scores)
    out = elicitation_table(scores, prompts)
    write_parquet(out, out_table)
    fig_elicitation(out, png, csv)
    return {"n_scores": scores.height, "n_rows": out.height, "judge_stats": stats}
