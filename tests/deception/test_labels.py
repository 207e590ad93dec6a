"""The deception labels stage (interpflow.deception.labels): judge labels, failures counted."""

import json
import re

import polars as pl
import pytest
from fakeapi import FakeAPIServer

from interpflow.artifacts import CorruptFileError
from interpflow.deception.labels import keyword_label, label_generations, parse_label
from interpflow.judges import JudgeConfig, JudgeFailureError

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


def test_offline_labels_and_summary(generations, tmp_path):
    summary = label_generations(
        generations=generations,
        labels=tmp_path / "l.parquet",
        summary=tmp_path / "s.json",
        judge=JudgeConfig(backend="offline"),
        cache=tmp_path / "cache.sqlite",
        classes=CLASSES,
    )
    df = pl.read_parquet(tmp_path / "l.parquet")
    assert df["judge_label"].to_list() == ["normal", "deceptive", "eval_aware", "normal"]
    assert summary["agreement_with_category"] == 1.0
    assert json.loads((tmp_path / "s.json").read_text())["n_failed_calls"] == 0


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
