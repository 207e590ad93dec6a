"""Unit tests: heuristic-vs-suppression correlations (the report stage)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from interpflow.inoculation.correlations import correlate


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


def _scored(tmp_path, runs):
    """Score tables of eval completions of ``runs`` (offline judges)."""
    from interpflow.inoculation.scores import score_evals
    from interpflow.judges import JudgeConfig

    paths = []
    for run in runs:
        rows = [
            {
                "run": run,
                "step": step,
                "condition": cond,
                "eval_set": eval_set,
                "item_id": j,
                "instruction": f"q{j}",
                "system": None,
                "user": f"q{j}",
                "completion": f"haha fun answer {j}!" if step else f"answer {j}",
            }
            for step in (0, 2)
            for cond in (["default"] if run == "none" else ["default", "training"])
            for eval_set in ("trait", "em")
            for j in range(3)
        ]
        paths.append(tmp_path / f"{run}.parquet")
        pl.DataFrame(rows, schema_overrides={"system": pl.String}).write_parquet(paths[-1])
    out = {k: tmp_path / f"{k}.parquet" for k in ("scores", "summary", "em", "suppression")}
    offline = JudgeConfig(backend="offline", model="test")
    traits = {"Playful": {"description": "playful", "keywords": ["haha", "fun", "!"]}}
    score_evals(
        evals=paths,
        traits=traits,
        trait_judge=offline,
        em_judge=offline,
        cache=None,
        min_mass=0.25,
        out_scores=out["scores"],
        out_summary=out["summary"],
        out_em=out["em"],
        out_suppression=out["suppression"],
    )
    return out


def test_report_without_heuristics_draws_every_figure(tmp_path):
    """An instance that trains no inoculation prompt (an LR sweep's control runs): the score
    figures have their numbers, the predictor figures are empty, nothing fails."""
    from interpflow.inoculation.report import report_stage
    from interpflow.inoculation.study import FIGURES

    scored = _scored(tmp_path, ["none"])
    figures = {f: tmp_path / f"fig/{f}.png" for f in FIGURES}
    tables = {f: tmp_path / f"fig/{f}.csv" for f in FIGURES}
    inputs = {"summary": scored["summary"], "suppression": scored["suppression"]}
    summary = report_stage(**inputs, em=scored["em"], figures=figures, tables=tables)
    assert summary == {"n_points": 0, "n_correlations": 0}
    for f in FIGURES:
        assert figures[f].stat().st_size > 0 and tables[f].exists(), f
    steps = pl.read_csv(tables["trait_vs_step"])
    assert steps.filter(pl.col("metric") == "Playful").sort("step")["mean"].to_list() == [
        pytest.approx(0.0),
        pytest.approx(100 * round(9 * 3 / 5) / 9),  # haha, fun, ! -> digit round(9*3/5)
    ]
    assert pl.read_csv(tables["em_rates"]).height == 1
    assert pl.read_csv(tables["heuristic_correlations"]).height == 0
    with pytest.raises(ValueError, match="all or none"):
        report_stage(
            **inputs,
            em=scored["em"],
            heuristics=tmp_path / "h.parquet",
            figures=figures,
            tables=tables,
        )
    with pytest.raises(ValueError, match="report: tables must name exactly"):
        report_stage(**inputs, em=scored["em"], figures=figures, tables={"em_rates": "x.csv"})


def test_each_trait_correlates_over_its_own_prompts_and_cross_trait_apart():
    # Playful prompts p*, French prompts f*, neutral n*. Playful suppression rises with ph over
    # the Playful + neutral prompts (r = +1 there); the French prompts barely suppress Playful
    # whatever their ph (cross-trait). Pooling all prompts (the old behaviour) mixes the two.
    traits = {
        "p1": "Playful",
        "p2": "Playful",
        "p3": "Playful",
        "n1": "neutral",
        "f1": "French",
        "f2": "French",
        "f3": "French",
    }
    ph = {"p1": 0.2, "p2": 0.4, "p3": 0.6, "n1": 0.0, "f1": 0.9, "f2": 0.5, "f3": 0.7}
    playful = {"p1": 20.0, "p2": 40.0, "p3": 60.0, "n1": 0.0, "f1": 3.0, "f2": 1.0, "f3": 2.0}
    french = {"p1": 1.0, "p2": 3.0, "p3": 2.0, "n1": 0.0, "f1": 90.0, "f2": 50.0, "f3": 70.0}
    keys = list(traits)
    heur = pl.DataFrame({"prompt_key": keys, "prefix_type": "fixed", "ph": [ph[k] for k in keys]})
    supp = pl.concat(
        [
            pl.DataFrame(
                {
                    "prompt_key": keys,
                    "prefix_type": "fixed",
                    "trait": t,
                    "suppression": [s[k] for k in keys],
                }
            )
            for t, s in (("Playful", playful), ("French", french))
        ]
    )
    corr = correlate(heur, supp, traits)
    r = {
        (t, sc): (v, n)
        for t, sc, v, n in corr.filter(pl.col("prefix_type") == "fixed")
        .select("trait", "scope", "r", "n")
        .rows()
    }
    assert r[("Playful", "own")] == (pytest.approx(1.0), 4)  # p1-p3 + n1
    assert r[("French", "own")] == (pytest.approx(1.0), 4)  # f1-f3 + n1
    own_p = [k for k in keys if traits[k] in ("Playful", "neutral")]
    cross_p = [k for k in keys if traits[k] == "French"]
    assert r[("Playful", "cross")] == (
        pytest.approx(np.corrcoef([ph[k] for k in cross_p], [playful[k] for k in cross_p])[0, 1]),
        3,
    )
    # pooled: the own points of both traits (the neutral prompt once per trait)
    own_f = [k for k in keys if traits[k] in ("French", "neutral")]
    x = [ph[k] for k in own_p] + [ph[k] for k in own_f]
    y = [playful[k] for k in own_p] + [french[k] for k in own_f]
    assert r[("pooled", "own")] == (pytest.approx(np.corrcoef(x, y)[0, 1]), 8)
    # the old pooling over every prompt for one trait gives a different (wrong) number
    every = np.corrcoef([ph[k] for k in keys], [playful[k] for k in keys])[0, 1]
    assert abs(every - 1.0) > 0.5
    # prefix_type "all" pools fixed and mix: here only fixed, so it equals the fixed rows
    all_rows = corr.filter(pl.col("prefix_type") == "all").drop("prefix_type")
    assert all_rows.equals(corr.filter(pl.col("prefix_type") == "fixed").drop("prefix_type"))


def test_the_elicitation_screen_replaces_the_runs_step0_elicitation(tmp_path):
    """With the screen's table, a prompt's elicitation (both prefix types) is the screen's; a
    prompt the screen lacks keeps its run's step-0 value; dataset.csv carries it."""
    from interpflow.inoculation.report import report_stage
    from interpflow.inoculation.study import FIGURES

    scored = _scored(tmp_path, ["none", "clown-fixed", "clown-mix"])
    figures = {f: tmp_path / f"fig/{f}.png" for f in FIGURES}
    tables = {f: tmp_path / f"fig/{f}.csv" for f in FIGURES}
    kw = {"summary": scored["summary"], "suppression": scored["suppression"], "em": scored["em"]}
    report_stage(**kw, figures=figures, tables=tables, dataset=tmp_path / "d0.csv")
    before = pl.read_csv(tmp_path / "d0.csv")
    assert before.height == 2 and before["elicitation"].to_list() == [0.0, 0.0]  # step 0: no haha
    screen = tmp_path / "screen.parquet"
    pl.DataFrame(
        {"prompt_key": ["clown"], "trait": ["Playful"], "elicitation": [42.0]}
    ).write_parquet(screen)
    report_stage(**kw, figures=figures, tables=tables, dataset=tmp_path / "d.csv", screen=screen)
    after = pl.read_csv(tmp_path / "d.csv")
    assert after["elicitation"].to_list() == [42.0, 42.0]
    assert after["trait_role"].to_list() == ["neutral", "neutral"]  # no prompt traits given
    pts = pl.read_csv(tables["elicitation_vs_suppression"])
    assert pts["elicitation"].to_list() == [42.0, 42.0]


def test_the_screens_mix_elicitation_goes_to_the_mix_run(tmp_path):
    """A screen with both prefix types: the fixed run takes the fixed prefix's elicitation, the
    mix run its rephrasings'; a screen row of the fixed type only serves both."""
    from interpflow.inoculation.report import elicitation_of, report_stage
    from interpflow.inoculation.study import FIGURES

    scored = _scored(tmp_path, ["none", "clown-fixed", "clown-mix", "sky-fixed", "sky-mix"])
    screen = tmp_path / "screen.parquet"
    pl.DataFrame({
        "prompt_key": ["clown", "clown", "sky"], "prefix_type": ["fixed", "mix", "fixed"],
        "trait": ["Playful"] * 3, "elicitation": [42.0, 17.0, -3.0],
    }).write_parquet(screen)  # fmt: skip
    got = elicitation_of(pl.read_parquet(scored["summary"]), screen)
    by = {(k, t): e for k, t, e in got.select("prompt_key", "prefix_type", "elicitation").rows()}
    assert by == {("clown", "fixed"): 42.0, ("clown", "mix"): 17.0,
                  ("sky", "fixed"): -3.0, ("sky", "mix"): -3.0}  # fmt: skip
    figures = {f: tmp_path / f"fig/{f}.png" for f in FIGURES}
    tables = {f: tmp_path / f"fig/{f}.csv" for f in FIGURES}
    report_stage(
        summary=scored["summary"], suppression=scored["suppression"], em=scored["em"],
        figures=figures, tables=tables, dataset=tmp_path / "d.csv", screen=screen,
    )  # fmt: skip
    d = pl.read_csv(tmp_path / "d.csv").filter(pl.col("prompt_key") == "clown")
    assert dict(zip(d["prefix_type"], d["elicitation"])) == {"fixed": 42.0, "mix": 17.0}
