"""What the deception probes predict (interpflow.deception.targets): the verbalizer's labels
voted per prompt (majority, ties and missing labels left unlabelled), and labels under
probes.min_label_confidence dropped and counted, on tables whose answers are worked by hand."""

from __future__ import annotations

import polars as pl
import pytest

from interpflow.deception.common import ProbeConfig
from interpflow.deception.targets import aggregate_votes, read_labels


@pytest.mark.parametrize(
    "votes,expected",
    [
        (["deceptive", "eval_aware", "deceptive"], ("deceptive", "majority")),
        (["eval_aware", None, None], ("eval_aware", "majority")),  # unlabelled rows do not vote
        (["eval_aware", "deceptive"], (None, "tie")),  # no class is preferred
        (["normal", "normal", "deceptive", "deceptive", "eval_aware"], (None, "tie")),
        ([None, None], (None, "no_label")),
        ([], (None, "no_label")),
    ],
)
def test_aggregate_votes(votes, expected):
    assert aggregate_votes(votes) == expected


@pytest.fixture
def tables(tmp_path):
    labels = pl.DataFrame(
        {
            "prompt_id": ["p1", "p2", "p3", "p4", "p5"],
            "category": ["eval_aware", "normal", "deceptive", "normal", "normal"],
            "judge_label": ["eval_aware", "normal", None, "deceptive", "normal"],
            "label_confidence": [0.9, 0.49, None, None, 0.5],
        }
    )
    # p1: 2 eval_aware (0.9, 0.4) + 1 deceptive (0.8); p2: normal twice; p3: no label at all;
    # p4: no verbalizer text; p5: deceptive with no confidence + normal 0.7 and 0.6, and a
    # response-position row (deceptive 0.9) that probes.positions [last_prompt] leaves out
    rows = [
        ("p1", "last_prompt", "eval_aware", 0.9),
        ("p1", "last_prompt", "eval_aware", 0.4),
        ("p1", "last_prompt", "deceptive", 0.8),
        ("p2", "last_prompt", "normal", 0.9),
        ("p2", "last_prompt", "normal", 0.9),
        ("p3", "last_prompt", None, None),
        ("p3", "last_prompt", None, None),
        ("p5", "last_prompt", "deceptive", None),
        ("p5", "last_prompt", "normal", 0.7),
        ("p5", "last_prompt", "normal", 0.6),
        ("p5", "response[0]", "deceptive", 0.9),
        ("p5", "response[0]", "deceptive", 0.9),
    ]
    nla = pl.DataFrame(
        {
            "prompt_id": [r[0] for r in rows],
            "layer": [2] * len(rows),
            "position": [r[1] for r in rows],
            "nla_label": [r[2] for r in rows],
            "nla_confidence": [r[3] for r in rows],
        },
        schema_overrides={"nla_label": pl.String, "nla_confidence": pl.Float64},
    )
    labels.write_parquet(tmp_path / "labels.parquet")
    nla.write_parquet(tmp_path / "nla.parquet")
    return tmp_path / "labels.parquet", tmp_path / "nla.parquet"


def _targets(df: pl.DataFrame, column: str) -> dict:
    return dict(zip(df["prompt_id"].to_list(), df[column].to_list()))


def test_verbalizer_label_is_the_majority_of_the_rows_at_the_probed_positions(tables):
    labels, nla = tables
    cfg = ProbeConfig(target="verbalizer_label", positions=("last_prompt",))
    df, report = read_labels(labels, cfg, nla)
    assert _targets(df, "verbalizer_label") == {
        "p1": "eval_aware",  # 2 of 3
        "p2": "normal",
        "p3": None,  # no labelled row
        "p4": None,  # no verbalizer text
        "p5": "normal",  # 2 of 3: the response rows (deceptive) are not at probes.positions
    }
    assert _targets(df, "verbalizer_rule")["p3"] == "no_label"
    assert report["n_prompts_majority"] == 3 and report["n_prompts_no_label"] == 1
    assert report["n_prompts_tie"] == 0 and report["n_prompts_without_text"] == 1
    assert report["n_rows"] == 10 and report["n_rows_unlabelled"] == 2
    everywhere, _ = read_labels(labels, ProbeConfig(target="verbalizer_label"), nla)
    assert _targets(everywhere, "verbalizer_label")["p5"] == "deceptive"  # 3 of 5 rows


def test_a_confidence_threshold_drops_verbalizer_rows_before_the_vote(tables):
    labels, nla = tables
    cfg = ProbeConfig(
        target="verbalizer_label", positions=("last_prompt",), min_label_confidence=0.5
    )
    df, report = read_labels(labels, cfg, nla)
    # p1 loses its eval_aware 0.4: one eval_aware against one deceptive is a tie;
    # p5 loses its deceptive row without a confidence: normal by 2 to 0
    assert _targets(df, "verbalizer_label") == {
        "p1": None,
        "p2": "normal",
        "p3": None,
        "p4": None,
        "p5": "normal",
    }
    assert _targets(df, "verbalizer_rule")["p1"] == "tie"
    assert report["n_dropped_low_confidence_rows"] == 1
    assert report["n_dropped_no_confidence_rows"] == 1
    assert report["n_prompts_tie"] == 1


def test_a_confidence_threshold_drops_judge_labels_under_it_or_without_one(tables):
    labels, _ = tables
    df, report = read_labels(labels, ProbeConfig(target="judge_label", min_label_confidence=0.5))
    # p2 (0.49) is under; p5 (0.5) is at the threshold and stays; p4 has no confidence;
    # p3 has no label to drop
    assert _targets(df, "judge_label") == {
        "p1": "eval_aware",
        "p2": None,
        "p3": None,
        "p4": None,
        "p5": "normal",
    }
    assert (report["n_dropped_low_confidence"], report["n_dropped_no_confidence"]) == (1, 1)
    kept, report = read_labels(labels, ProbeConfig(target="judge_label"))
    assert kept["judge_label"].null_count() == 1 and report["n_dropped_low_confidence"] == 0


def test_the_category_has_no_confidence_and_keeps_every_row(tables):
    labels, _ = tables
    df, report = read_labels(labels, ProbeConfig(target="category", min_label_confidence=0.99))
    assert df["category"].null_count() == 0 and "n_dropped_low_confidence" not in report


def test_bad_input_names_the_key_or_the_file(tables, tmp_path):
    labels, nla = tables
    with pytest.raises(ValueError, match="labels.verbalizer.enabled: true"):
        read_labels(labels, ProbeConfig(target="verbalizer_label"))
    old = tmp_path / "old_labels.parquet"
    pl.read_parquet(labels).drop("label_confidence").write_parquet(old)
    with pytest.raises(ValueError, match=f"{old} has no 'label_confidence' column"):
        read_labels(old, ProbeConfig(target="judge_label", min_label_confidence=0.5))
    with pytest.raises(ValueError, match=r"probes.min_label_confidence must be in \[0, 1\]"):
        read_labels(labels, ProbeConfig(target="judge_label", min_label_confidence=50))
    with pytest.raises(ValueError, match="no rows at probes.positions"):
        read_labels(labels, ProbeConfig(target="verbalizer_label", positions=("x",)), nla)
