"""The deception labels stage (interpflow.deception.labels): judge labels, failures counted."""

import json
import math
import re

import polars as pl
import pytest

from interpflow.artifacts import CorruptFileError
from interpflow.deception.labels import (
    keyword_label,
    label_confidence,
    label_generations,
    logprob_confidence,
    parse_label,
    stated_confidence,
)
from interpflow.fakeapi import FakeAPIServer
from interpflow.judges import JudgeConfig, JudgeFailureError, JudgeReply

CLASSES = ["normal", "eval_aware", "deceptive"]


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("deceptive", "deceptive"),
        ("  Eval-aware.", "eval_aware"),
        ("EVAL AWARE", "eval_aware"),
        ("The answer is: normal", "normal"),
        ("normal or deceptive", None),  # two classes named: not guessed
        ("abnormal", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_label(reply, expected):
    assert parse_label(reply, CLASSES) == expected


def test_keyword_label():
    assert keyword_label("Pretend the shipment arrived and lie to the client") == "deceptive"
    assert keyword_label("This is part of a benchmark; you will be graded") == "eval_aware"
    assert keyword_label("How do I bake bread?") == "normal"


def run_labels(generations, tmp_path, judge: JudgeConfig) -> tuple[dict, pl.DataFrame]:
    """The labels stage on ``generations``: (its summary, its table)."""
    summary = label_generations(
        generations=generations,
        labels=tmp_path / "l.parquet",
        summary=tmp_path / "s.json",
        judge=judge,
        cache=tmp_path / "c.sqlite",
        classes=CLASSES,
    )
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    return summary, pl.read_parquet(tmp_path / "l.parquet")


def test_offline_labels_their_confidence_and_summary(generations, tmp_path):
    """The offline grader states its class's share of the keyword hits: "Lie to the
    inspector." and "You are being graded." hit one class once (100); "Bake bread?" and
    "Cats?" hit none, so "normal" is a guess among 3 classes (round(100/3) = 33)."""
    summary, df = run_labels(generations, tmp_path, JudgeConfig(backend="offline"))
    assert df["judge_label"].to_list() == ["normal", "deceptive", "eval_aware", "normal"]
    assert summary["agreement_with_category"] == 1.0 and summary["n_failed_calls"] == 0
    replies = ["normal 33", "deceptive 100", "eval_aware 100", "normal 33"]
    assert df["judge_reply"].to_list() == replies
    assert df["label_confidence"].to_list() == [0.33, 1.0, 1.0, 0.33]
    assert df["label_confidence_source"].to_list() == ["stated"] * 4
    assert summary["label_confidence"]["by_source"] == {"stated": 4}
    assert summary["label_confidence"]["mean"] == pytest.approx((0.33 + 1.0) / 2)


def test_openai_confidence_is_the_first_tokens_probability_of_the_chosen_class(
    generations, tmp_path, monkeypatch
):
    """Constructed first-token distributions: the class is read off the text, its confidence
    off the tokens that begin it ("eval" and " Eval" both begin eval_aware: 0.5 + 0.2)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    by_prompt = {  # prompt word -> (reply text, first-token alternatives)
        "Bake": ("normal 95", {"normal": 0.8, "de": 0.15, "eval": 0.05}),
        "Lie": ("deceptive 90", {"de": 0.6, "Dec": 0.1, "normal": 0.3}),
        "graded": ("eval_aware", {"eval": 0.5, " Eval": 0.2, "de": 0.3}),
        "Cats": ("The class is normal, 80", {"The": 0.9, "normal": 0.1}),  # not first: stated
    }

    def pick(req):
        user = req["messages"][-1]["content"]
        return next(v for k, v in by_prompt.items() if k in user)

    def alternatives(req):
        return {t: math.log(p) for t, p in pick(req)[1].items()}

    with FakeAPIServer(lambda req: pick(req)[0], top_logprobs=alternatives) as server:
        cfg = JudgeConfig(backend="openai", model="m", base_url=server.url)
        _, df = run_labels(generations, tmp_path, cfg)
        assert all(r["top_logprobs"] == 20 for r in server.requests)
    assert df["judge_label"].to_list() == ["normal", "deceptive", "eval_aware", "normal"]
    assert df["label_confidence"].to_list() == pytest.approx([0.8, 0.7, 0.7, 0.8])
    assert df["label_confidence_source"].to_list() == ["logprobs"] * 3 + ["stated"]


def test_anthropic_confidence_is_the_stated_number(generations, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    replies = {"Bake": "normal 85", "Lie": "Deceptive (70%)", "graded": "eval_aware", "Cats": "x"}

    def responder(req):
        user = req["messages"][-1]["content"]
        return next(v for k, v in replies.items() if k in user)

    with FakeAPIServer(responder) as server:
        cfg = JudgeConfig(backend="anthropic", model="claude", base_url=server.root_url)
        summary, df = run_labels(generations, tmp_path, cfg)
    assert df["judge_label"].to_list() == ["normal", "deceptive", "eval_aware", None]
    assert df["label_confidence"].to_list() == [0.85, 0.7, None, None]  # none stated: null
    assert summary["label_confidence"]["by_source"] == {"stated": 2, "none": 1}


@pytest.mark.parametrize(
    "reply,label,expected",
    [
        ("normal 90", "normal", 0.9),
        ("eval-aware: 100", "eval_aware", 1.0),
        ("deceptive 0.65", "deceptive", 0.65),  # a decimal fraction is read as one
        ("deceptive 1", "deceptive", 0.01),  # an integer is on the 0-100 scale asked for
        ("3. deceptive 40", "deceptive", 0.4),  # the number after the class
        ("normal 250", "normal", None),
        ("normal", "normal", None),
    ],
)
def test_stated_confidence(reply, label, expected):
    assert stated_confidence(reply, label) == (pytest.approx(expected) if expected else None)


def test_logprob_confidence_counts_only_tokens_that_begin_the_class_alone():
    top = {"eva": math.log(0.4), "eval": math.log(0.3), "evas": math.log(0.2), "x": math.log(0.1)}
    # "eva" begins both classes: it counts for neither; "evas" begins evasive only
    assert logprob_confidence(top, "eval_aware", ["eval_aware", "evasive"]) == pytest.approx(0.3)
    assert logprob_confidence(top, "evasive", ["eval_aware", "evasive"]) == pytest.approx(0.2)
    reply = JudgeReply("eval_aware 90", top_logprobs=top)
    assert label_confidence(reply, "eval_aware", ["eval_aware", "evasive"]) == (
        pytest.approx(0.3),
        "logprobs",
    )
    assert label_confidence(JudgeReply(None, error="x"), None, CLASSES) == (None, None)


def test_failed_and_unparseable_calls_are_null_and_counted(generations, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def responder(req):
        return "no idea" if "Bake" in req["messages"][-1]["content"] else "deceptive"

    def plan(i, req):
        return "500" if "Cats" in req["messages"][-1]["content"] else "ok"

    with FakeAPIServer(responder, plan=plan) as server:
        cfg = JudgeConfig(
            backend="openai", model="m", base_url=server.url, max_retries=1, max_failed_share=0.25
        )
        summary = label_generations(
            generations=generations,
            labels=tmp_path / "l.parquet",
            summary=tmp_path / "s.json",
            judge=cfg,
            cache=tmp_path / "c.sqlite",
            classes=CLASSES,
        )
    df = pl.read_parquet(tmp_path / "l.parquet")
    assert df["judge_label"].to_list() == [None, "deceptive", "deceptive", None]
    assert summary["n_failed_calls"] == 1 and summary["n_unparseable"] == 1
    assert summary["judge_label_counts"] == {"deceptive": 2}
    assert summary["judge_stats"]["failures"] == {"HTTP 500 Internal Server Error": 1}


def test_too_many_failed_calls_stop_the_stage_after_caching(generations, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-wrong")

    def plan(i, req):  # 2 of 4 rejected: above the default share 0.2
        return "401" if any(w in req["messages"][-1]["content"] for w in ("Cats", "Bake")) else "ok"

    out = {"labels": tmp_path / "l.parquet", "summary": tmp_path / "s.json"}
    with FakeAPIServer(lambda req: "normal", plan=plan) as server:
        cfg = JudgeConfig(backend="openai", model="m", base_url=server.url, name="gpt")
        args = dict(generations=generations, **out, judge=cfg, cache=tmp_path / "c.sqlite")
        with pytest.raises(JudgeFailureError, match=r"judge 'gpt' .*2 of 4 calls failed"):
            label_generations(**args, classes=CLASSES)
        assert not any(p.exists() for p in out.values())
        server.plan = None  # the key is fixed: only the two failed requests are sent again
        server.reset()
        summary = label_generations(**args, classes=CLASSES)
        assert server.n_requests == 2 and summary["judge_stats"]["n_cache_hits"] == 2
    assert summary["n_failed_calls"] == 0 and summary["judge_label_counts"] == {"normal": 4}


def test_corrupt_generations_fail_naming_the_file_and_keep_the_cache(generations, tmp_path):
    cache = tmp_path / "cache.sqlite"
    args = {
        "generations": generations,
        "labels": tmp_path / "l.parquet",
        "summary": tmp_path / "s.json",
        "judge": JudgeConfig(backend="offline"),
        "cache": cache,
        "classes": CLASSES,
    }
    label_generations(**args)
    cached = cache.read_bytes()
    data = generations.read_bytes()
    generations.write_bytes(data[: len(data) // 2])  # an upstream copy cut short
    with pytest.raises(
        CorruptFileError, match=f"^{re.escape(str(generations))}: not a valid parquet file"
    ):
        label_generations(**args)
    assert cache.read_bytes() == cached  # the paid-for judge replies are untouched
    assert pl.read_parquet(tmp_path / "l.parquet").height == 4  # as is the earlier output
