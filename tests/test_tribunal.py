"""Unit tests of interpflow.tribunal (parser, problems, labels, stopping, probes) and of the
``stop_when`` extension of interpflow.generate.generate_and_capture."""

from __future__ import annotations

import json
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from interpflow import tribunal as T
from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig, generate_and_capture
from interpflow.models import ModelSpec

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources/tribunal/gsm8k_sample.jsonl"

# ------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------

PARSE_CASES = [
    # (response, value, method)
    ("So the total is 18.\n\nThe final answer is $\\boxed{18}$.", "18", "boxed"),
    ("Janet makes 9 * 2 = 18 dollars.\n#### 18", "18", "hashes"),
    ("She pays 1200 + 50 = 1250.\n#### 1,250", "1250", "hashes"),
    ("The answer is 42.", "42", "answer_is"),
    ("Therefore, the answer is: 7 apples.", "7", "answer_is"),
    ("**Final Answer:** $1,234.50", "2469/2", "answer_is"),
    ("**Final Answer**: 15", "15", "answer_is"),
    ("Answer: -6 degrees", "-6", "answer_is"),
    ("the answer is \u22126", "-6", "answer_is"),
    ("The answer is +3.", "3", "answer_is"),
    ("The answer is 3/4.", "3/4", "answer_is"),
    ("The answer is 0.75 liters", "3/4", "answer_is"),
    ("The answer is .5", "1/2", "answer_is"),
    ("Final answer: 40%", "40", "answer_is"),
    ("The answer would be 1,000,000 dollars.", "1000000", "answer_is"),
    ("\\boxed{\\frac{5}{2}}", "5/2", "boxed"),
    ("\\boxed{-\\dfrac{3}{4}}", "-3/4", "boxed"),
    ("\\boxed{\\$1,250}", "1250", "boxed"),
    ("\\boxed{18 \\text{ dollars}}", "18", "boxed"),
    ("\\boxed{18\\%}", "18", "boxed"),
    ("\\boxed{x = 12}", "12", "boxed"),
    ("First \\boxed{10}, but wait, fix it: \\boxed{12}", "12", "boxed"),
    ("\\boxed{{20}}", "20", "boxed"),
    ("<think>maybe 5... the answer is 5? no, 6</think>\n\nThe answer is \\boxed{6}.", "6", "boxed"),
    (
        "<think>The answer is 5.</think>\nSo we get 5 cookies.",
        None,
        "none",
    ),  # only inside the thought
    ("Okay, let me think. 3 + 4 = 7, then 7 * 2 = 14", None, "none"),
    ("The answer is unclear.", None, "none"),
    ("", None, "none"),
    ("\\boxed{}", None, "none"),
    ("The answer is 12. #### 13", "13", "hashes"),  # #### outranks "answer is"
    ("The answer is 12, then \\boxed{14}", "14", "boxed"),
    ("The answer is not 5. The answer is 8.", "8", "answer_is"),
    ("He has 62 - 31 = 31 dollars left.\nThe answer is 31 dollars.", "31", "answer_is"),
    ("The answer is $ 2.50 per cup", "5/2", "answer_is"),
    ("The answer is 1 234", "1", "answer_is"),  # space is not a thousands separator
]


@pytest.mark.parametrize("response,value,method", PARSE_CASES)
def test_parse_final_answer(response, value, method):
    got = T.parse_final_answer(response)
    assert T.format_number(got.value) == value
    assert got.method == method


def test_last_number_fallback_is_opt_in():
    text = "Okay so 3 + 4 = 7, and 7 * 2 = 14 apples"
    assert T.parse_final_answer(text).method == "none"
    got = T.parse_final_answer(text, last_number_fallback=True)
    assert (got.value, got.method) == (Fraction(14), "last_number")


@pytest.mark.parametrize(
    "text,value",
    [
        ("1,234", "1234"),
        ("12,50", "12"),
        ("-0.5", "-1/2"),
        ("7/0", None),
        ("no digits", None),
        ("$ -3", "-3"),
        ("3.14159", "314159/100000"),
        ("L2 is 9", "9"),
    ],
)
def test_parse_number(text, value):
    assert T.format_number(T.parse_number(text)) == value


def test_gold_answer():
    assert T.gold_answer("2 + 2 = 4\n#### 4") == 4
    assert T.gold_answer("x\n#### 1,250") == 1250
    with pytest.raises(ValueError, match="no '#### <number>'"):
        T.gold_answer("just text 4")
    with pytest.raises(ValueError, match="no number after"):
        T.gold_answer("#### many")


# ------------------------------------------------------------------------------------------
# problems
# ------------------------------------------------------------------------------------------


def test_shipped_sample_is_valid():
    lines = SAMPLE.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= 40
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert r["question"].strip() and r["answer"].count("####") == 1
        assert isinstance(T.gold_answer(r["answer"]), Fraction)
    problems = T.load_problems(SAMPLE)
    assert problems.height == len(records) and problems["problem_id"].to_list() == ids
    assert problems.filter(pl.col("problem_id") == "sample-030")["gold"].item() == "-6"


def test_load_problems_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text(
        '{"question": "q", "answer": "a\\n#### 3"}\n{"question": "q2", "answer": "no"}\n'
    )
    with pytest.raises(ValueError, match=r"p.jsonl:2: answer has no"):
        T.load_problems(bad)
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: not valid JSON"):
        T.load_problems(bad)
    bad.write_text('{"answer": "#### 1"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: missing question"):
        T.load_problems(bad)
    with pytest.raises(ValueError, match="does not exist"):
        T.load_problems(tmp_path / "missing.jsonl")


def test_load_problems_parquet_and_split_ids(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"question": ["a?", "b?"], "answer": ["#### 1", "#### 2.5"]}).write_parquet(path)
    df = T.load_problems(path, split="train")
    assert df["problem_id"].to_list() == ["train-00000", "train-00001"]
    assert df["gold"].to_list() == ["1", "5/2"]


def test_hub_source_without_datasets_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ValueError, match="needs the 'datasets' package"):
        T.load_problems("openai/gsm8k", "main", "test")


def test_build_prompts_order_ids_and_cut():
    problems = T.load_problems(SAMPLE)
    pr = T.build_prompts(problems, "Reason step by step.", 3, 10, shuffle=False)
    assert pr.height == 10
    assert pr["problem_id"].to_list()[:4] == ["sample-000"] * 3 + ["sample-001"]
    assert pr["sample"].to_list()[:4] == [0, 1, 2, 0]
    assert pr["category"].to_list() == pr["problem_id"].to_list()
    assert pr["prompt_id"].n_unique() == 10
    assert pr["prompt"][0].endswith("\n\nReason step by step.")
    again = T.build_prompts(problems, "Reason step by step.", 3, 10, shuffle=True, seed=1)
    assert (
        again["prompt_id"].to_list()
        == T.build_prompts(problems, "Reason step by step.", 3, 10, True, 1)["prompt_id"].to_list()
    )
    assert again["problem_id"][0] != "sample-000" or again["problem_id"][3] != "sample-001"


# ------------------------------------------------------------------------------------------
# labels
# ------------------------------------------------------------------------------------------


def _gens(prompts: pl.DataFrame, responses: list[str]) -> pl.DataFrame:
    n = len(responses)
    return pl.DataFrame(
        {
            "prompt_id": prompts["prompt_id"][:n],
            "category": prompts["category"][:n],
            "response": responses,
            "finished": [True] * n,
            "response_tokens": pl.Series([5] * n, dtype=pl.Int32),
        }
    )


def test_label_traces_counts_unparseable():
    prompts = T.build_prompts(T.load_problems(SAMPLE), "x", 1, 4, shuffle=False)
    gold = prompts["gold"].to_list()  # 29, 14, 260, 11
    gens = _gens(prompts, [f"The answer is {gold[0]}.", "\\boxed{15}", "I give up", "#### 11.0"])
    lab = T.label_traces(gens, prompts)
    assert lab["label"].to_list() == ["correct", "incorrect", "unparseable", "correct"]
    assert lab["probe_label"].to_list() == ["correct", "incorrect", None, "correct"]
    assert T.class_counts(lab) == {
        "correct": 2,
        "incorrect": 1,
        "unparseable": 1,
        "probe_correct": 2,
        "probe_incorrect": 1,
        "probe_dropped": 1,
    }
    lab2 = T.label_traces(gens, prompts, unparseable="incorrect")
    assert lab2["probe_label"].to_list() == ["correct", "incorrect", "incorrect", "correct"]
    with pytest.raises(ValueError, match="unparseable must be drop or incorrect"):
        T.label_traces(gens, prompts, unparseable="skip")


def test_stopping_rule():
    prompts = T.build_prompts(T.load_problems(SAMPLE), "x", 1, 6, shuffle=False)
    gold = prompts["gold"].to_list()
    stop = T.StoppingRule(target_correct=2, target_incorrect=1)(prompts)
    assert not stop(_gens(prompts, [f"#### {gold[0]}", "???"]))
    assert not stop(_gens(prompts, [f"#### {gold[0]}", f"#### {gold[1]}", "???"]))
    assert stop(_gens(prompts, [f"#### {gold[0]}", f"#### {gold[1]}", "???", "#### 1"])) is True
    as_incorrect = T.StoppingRule(1, 1, unparseable="incorrect")(prompts)
    assert as_incorrect(_gens(prompts, [f"#### {gold[0]}", "???"]))


# ------------------------------------------------------------------------------------------
# generate_and_capture(stop_when=...) on the stub: stops, resumes, reruns identically
# ------------------------------------------------------------------------------------------


def _collect(tmp: Path, prompts_path: Path, stub_dir: Path, stop_when, **kw):
    out = tmp / "out"
    return out, generate_and_capture(
        prompts_path,
        out / "gen.parquet",
        out / "act.parquet",
        out / "act.parquet.provenance.json",
        model=ModelSpec(str(stub_dir)),
        sampling=SamplingConfig(max_new_tokens=4, temperature=1.0, seed=3),
        capture=CaptureConfig(layers=(1, 3), positions=("response_mean", "last_response")),
        run=RunConfig(batch_size=3, shard_size=3),
        stop_when=stop_when,
        **kw,
    )


def test_stop_when_stops_after_shard_and_reruns_identically(tmp_path, stub_dir):
    prompts = T.build_prompts(T.load_problems(SAMPLE), "x", 2, 11, shuffle=False)
    pp = tmp_path / "prompts.parquet"
    prompts.write_parquet(pp)
    calls = []

    def stop_after_six(gens):
        calls.append(gens.height)
        return gens.height >= 6

    out, summary = _collect(tmp_path / "a", pp, stub_dir, stop_after_six)
    assert calls == [3, 6]
    assert summary["n_shards"] == 4 and summary["n_shards_used"] == 2 and summary["stopped_early"]
    gens = pl.read_parquet(out / "gen.parquet")
    assert gens["prompt_id"].to_list() == prompts["prompt_id"][:6].to_list()
    acts = pl.read_parquet(out / "act.parquet")
    assert set(acts["prompt_id"]) <= set(gens["prompt_id"]) and acts["layer"].n_unique() == 2
    assert not (out / "gen.parquet.shards").exists()

    # a second run stops at the same shard with the same files
    out2, _ = _collect(tmp_path / "b", pp, stub_dir, stop_after_six)
    for f in ("gen.parquet", "act.parquet"):
        assert pl.read_parquet(out / f).equals(pl.read_parquet(out2 / f)), f

    # a run killed after shard 0 resumes and stops at the same place (shard 0 is reused)
    out3 = tmp_path / "c" / "out"
    shard_dir = out3 / "gen.parquet.shards"

    def die_after_first(gens):
        raise KeyboardInterrupt

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        with pytest.raises(KeyboardInterrupt):
            _collect(tmp_path / "c", pp, stub_dir, die_after_first)
    finally:  # the kill skipped generate's own cleanup: give the handlers back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert (shard_dir / "00000.generations.parquet").exists()
    _, s3 = _collect(tmp_path / "c", pp, stub_dir, stop_after_six)
    assert s3["shards_resumed"] == 1 and s3["n_shards_used"] == 2
    assert pl.read_parquet(out3 / "gen.parquet").equals(pl.read_parquet(out / "gen.parquet"))

    # no stop_when: every shard, as before
    out4, s4 = _collect(tmp_path / "d", pp, stub_dir, None)
    assert s4["n_shards_used"] == 4 and not s4["stopped_early"]
    assert pl.read_parquet(out4 / "gen.parquet").head(6).equals(gens)


# ------------------------------------------------------------------------------------------
# probes and directions on synthetic activations
# ------------------------------------------------------------------------------------------


def _synthetic(tmp_path: Path, n_problems=16, samples=3, d=12, signal=3.0, seed=0):
    """Activations where 'correct' traces are shifted along a known direction."""
    rng = np.random.default_rng(seed)
    true_dir = np.zeros(d)
    true_dir[2] = 1.0
    rows, acts = [], []
    for p in range(n_problems):
        for k in range(samples):
            pid = f"p{p:02d}s{k}"
            correct = (p + k) % 2 == 0
            label = "correct" if correct else "incorrect"
            if p == 0 and k == 0:
                label = "unparseable"
            rows.append(
                {
                    "prompt_id": pid,
                    "problem_id": f"prob{p:02d}",
                    "sample": k,
                    "gold": "1",
                    "parsed": None,
                    "parse_method": "none",
                    "label": label,
                    "probe_label": None if label == "unparseable" else label,
                    "finished": True,
                    "response_tokens": 5,
                }
            )
            for layer in (1, 2):
                for pos in ("response_mean", "last_response"):
                    x = rng.normal(size=d) * 0.5 + (signal * layer * true_dir if correct else 0)
                    acts.append((pid, layer, pos, x))
    labels = pl.DataFrame(rows, schema=T.LABEL_SCHEMA)
    flat = np.concatenate([a[3] for a in acts]).astype(np.float16)
    table = pa.table(
        {
            "prompt_id": [a[0] for a in acts],
            "layer": pa.array([a[1] for a in acts], pa.int16()),
            "position": [a[2] for a in acts],
            "token_index": pa.array([-1] * len(acts), pa.int32()),
            "activation": pa.FixedSizeListArray.from_arrays(pa.array(flat), d),
        }
    )
    path = tmp_path / "act.parquet"
    pq.write_table(table, path)
    return path, labels, true_dir


def test_fit_tribunal_probes_recovers_direction(tmp_path):
    act, labels, true_dir = _synthetic(tmp_path)
    out = tmp_path / "probes"
    m = T.fit_tribunal_probes(
        act, labels, [1, 2], ["response_mean", "last_response"], out, n_bootstrap=50
    )
    assert m["status"] == "ok" and m["reason"] is None
    assert m["best"]["accuracy_above_0.70"] and m["best"]["ci_low_above_majority"]
    assert m["best"]["probe"] in m["probes"]
    assert m["counts"]["unparseable"] == 1 and m["counts"]["probe_dropped"] == 1
    assert set(m["probes"]) == {
        "L1.response_mean",
        "L1.last_response",
        "L2.response_mean",
        "L2.last_response",
    }
    for p in m["probes"].values():
        assert p["metrics"]["accuracy"] >= 0.9 and p["metrics"]["auroc"] >= 0.9
        lo, hi = p["metrics"]["accuracy_ci"]
        assert lo <= p["metrics"]["accuracy"] <= hi
        assert p["n_train"] + p["n_test"] == 47
    tensors = load_file(str(out / "implicit_value_directions.safetensors"))
    for key in ("L1.response_mean", "L2.last_response"):
        w = tensors[f"{key}.direction"]
        assert abs(np.linalg.norm(w) - 1) < 1e-5
        assert np.abs(w).argmax() == 2 and w @ true_dir > 0.4  # points towards "correct"
        gap = tensors[f"{key}.mean_correct"] - tensors[f"{key}.mean_incorrect"]
        assert gap[2] > 2.0
    js = json.loads((out / "implicit_value_directions.json").read_text())
    assert (
        js["positive_class"] == "correct"
        and len(js["directions"]["2"]["last_response"]["direction"]) == 12
    )
    table = pl.read_csv(out / "probe_results.csv")
    assert table.height == 2 * 2 * 3 and set(table["metric"]) == {
        "accuracy",
        "auroc",
        "majority_accuracy",
    }
    logits = pl.read_parquet(out / "probe_logits.parquet")
    test = logits.filter(pl.col("split") == "test")
    assert (
        test.filter(pl.col("label") == "correct")["logit"].mean()
        > test.filter(pl.col("label") == "incorrect")["logit"].mean()
    )
    # no problem on both sides of the split
    split_per_problem = logits.group_by("problem_id").agg(pl.col("split").n_unique())
    assert split_per_problem["split"].max() == 1
    assert (out / "probe_results.png").stat().st_size > 10_000


def test_fit_tribunal_probes_logits_match_sklearn(tmp_path):
    """The raw-space direction + intercept reproduce the pipeline's log-odds of 'correct'."""
    import joblib  # noqa: F401  (sklearn is there)

    from interpflow.probes import load_probe_dataset, make_logreg

    act, labels, _ = _synthetic(tmp_path, signal=0.5)
    out = tmp_path / "probes"
    T.fit_tribunal_probes(act, labels, [1], ["response_mean"], out, n_bootstrap=10)
    logits = pl.read_parquet(out / "probe_logits.parquet")
    train_ids = set(logits.filter(pl.col("split") == "train")["prompt_id"])
    lab = labels.filter(pl.col("probe_label").is_not_null())
    ds = load_probe_dataset(act, lab, "probe_label", 1, ["response_mean"])
    tr = np.isin(ds.groups, list(train_ids))
    pipe = make_logreg(0).fit(ds.X[tr], ds.y[tr])
    ref = -pipe.decision_function(ds.X)  # classes_ = [correct, incorrect]
    np.testing.assert_allclose(
        logits.sort("prompt_id")["logit"].to_numpy(), ref, rtol=1e-4, atol=1e-4
    )


def test_fit_tribunal_probes_skips_when_a_class_is_absent(tmp_path):
    act, labels, _ = _synthetic(tmp_path)
    only_unparseable = labels.with_columns(
        pl.lit("unparseable").alias("label"), pl.lit(None, pl.String).alias("probe_label")
    )
    out = tmp_path / "probes"
    m = T.fit_tribunal_probes(act, only_unparseable, [1, 2], ["response_mean"], out, n_bootstrap=10)
    assert m["status"] == "skipped" and m["probes"] is None and m["best"] is None
    assert "no correct and no incorrect traces" in m["reason"] and "48 unparseable" in m["reason"]
    assert pl.read_csv(out / "probe_results.csv").height == 0
    assert load_file(str(out / "implicit_value_directions.safetensors")) == {}
    assert json.loads((out / "implicit_value_directions.json").read_text())["directions"] == {}
    assert (out / "probe_results.png").exists()
    all_incorrect = labels.with_columns(pl.lit("incorrect").alias("probe_label"))
    m2 = T.fit_tribunal_probes(
        act, all_incorrect, [1], ["response_mean"], tmp_path / "p2", n_bootstrap=10
    )
    assert m2["status"] == "skipped" and m2["reason"].startswith("no correct traces")


def test_probe_with_a_class_missing_at_one_position_is_skipped_alone(tmp_path):
    """Rows absent at one layer × position (empty responses) skip that probe, not the stage."""
    act, labels, _ = _synthetic(tmp_path)
    correct = set(labels.filter(pl.col("label") == "correct")["prompt_id"])
    df = pl.read_parquet(act)
    gone = (pl.col("layer") == 2) & (pl.col("position") == "last_response")
    df.filter(~(gone & pl.col("prompt_id").is_in(list(correct)))).write_parquet(act)
    m = T.fit_tribunal_probes(
        act, labels, [1, 2], ["last_response"], tmp_path / "p", n_bootstrap=10
    )
    assert m["status"] == "ok"
    assert (
        "skipped" in m["probes"]["L2.last_response"]
        and "metrics" in m["probes"]["L1.last_response"]
    )
    assert m["best"]["probe"] == "L1.last_response"
    tensors = load_file(str(tmp_path / "p/implicit_value_directions.safetensors"))
    assert "L1.last_response.direction" in tensors and "L2.last_response.direction" not in tensors
    assert set(pl.read_csv(tmp_path / "p/probe_results.csv")["layer"]) == {1}
