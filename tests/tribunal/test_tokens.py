"""Stage tribunal_tokens (interpflow.tribunal.tokens): the pre_answer window ends exactly
before the final-answer tokens, a feature planted only in answer tokens is invisible to it
(and to the per-token probe on that window) but not to the whole-response mean, and the stage
on the stub writes the window rows and one row per response token."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from interpflow.capture import _PositionPlan, activation_table
from interpflow.models import ModelSpec, load_model
from interpflow.positions import parse_positions
from interpflow.tribunal.answers import parse_final_answer
from interpflow.tribunal.common import CaptureSettings, LabelsConfig, ProbesConfig
from interpflow.tribunal.labels import LABEL_SCHEMA
from interpflow.tribunal.per_token import trace_scores
from interpflow.tribunal.probes import fit_tribunal_probes
from interpflow.tribunal.tokens import answer_windows, capture_tokens, pre_answer_end
from tribunal.test_probes import OUTPUTS


@pytest.fixture(scope="module")
def tokenizer(stub_dir):
    return load_model(ModelSpec(str(stub_dir)))[1]


@pytest.mark.parametrize(
    "response, answer",
    [
        ("Add 2 and 3 to get 5. The answer is 5.", "answer is 5"),
        ("First 12 + 30 = 42, so \\boxed{42} it is", "\\boxed{42}"),
        ("Sum: 7\n#### 7", "#### 7"),
        ("3 + 4 = 7", "7"),  # the last-number fallback: the number itself
    ],
)
def test_the_window_ends_exactly_before_the_answer_tokens(tokenizer, response, answer):
    parsed = parse_final_answer(response, last_number_fallback=True)
    start, end = parsed.span
    assert response[start:end] == answer  # the parser's span is the final-answer statement
    enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    win = answer_windows(tokenizer, ["t"], [response], [True], last_number_fallback=True).row(
        0, named=True
    )
    k = win["window_end"]
    assert (win["answer_start"], win["answer_end"], win["n_tokens"]) == (start, end, len(offsets))
    assert 0 < k < len(offsets)
    # every token in the window ends at or before the answer; the next one reaches into it
    assert all(b <= start for _, b in offsets[:k]) and offsets[k][1] > start
    # the window's tokens are the text before the answer, the rest the answer (and after)
    ids = enc["input_ids"]
    assert tokenizer.decode(ids[:k]).strip() == response[:start].strip()
    assert answer.strip() in tokenizer.decode(ids[k:])


def test_the_window_ends_before_think_and_covers_a_trace_without_answer(tokenizer):
    thought = "<think>2 + 3 is 5, so 5</think> The answer is 5."
    parsed = parse_final_answer(thought)
    assert pre_answer_end(thought, parsed) == thought.index("</think>")
    none = "I am not sure what to do here"
    assert pre_answer_end(none, parse_final_answer(none)) == len(none)
    win = answer_windows(tokenizer, ["a", "b"], [thought, none], [True, False])
    n_none = len(tokenizer(none, add_special_tokens=False)["input_ids"])
    assert win["answer_start"].to_list()[1] == -1 and win["window_end"].to_list()[1] == n_none
    ids = tokenizer(thought, add_special_tokens=False)["input_ids"]
    assert "</think>" not in tokenizer.decode(ids[: win["window_end"][0]])


def test_trace_score_is_the_mean_of_its_token_logits():
    ids, score = trace_scores(np.array([1.0, 3.0, -2.0, 0.5]), np.array(["b", "b", "a", "a"]))
    assert ids.tolist() == ["a", "b"] and score.tolist() == [-0.75, 2.0]


def _planted(tmp_path, n_problems=24, d=6, planted=10.0, seed=0):
    """Per-token hidden states read through capture's position plan. Both traces of a problem
    (one correct, one incorrect) share their tokens before the answer, as a causal model's
    states do for a shared prefix; only the answer tokens carry the class (dimension 0 =
    +planted / -planted), and so does the text: "Step <p>. The answer is yes/no." Returns
    (activations, tokens, spans, generations) paths and the labels table."""
    import torch

    rng = np.random.default_rng(seed)
    p_len, rows, spans, texts = 3, [], [], []
    pids, r_lens, ends, hs, labels = [], [], [], [], []
    for p in range(n_problems):
        r_len = int(rng.integers(6, 11))
        end = r_len - 3  # three answer tokens
        shared = rng.normal(size=(p_len + r_len, d))
        for k, label in enumerate(("correct", "incorrect")):
            h = shared.copy()
            h[p_len + end :, 0] += planted if label == "correct" else -planted
            pids.append(f"p{p:02d}s{k}")
            r_lens.append(r_len)
            ends.append(end)
            hs.append(h)
            labels.append(label)
            rows.append(
                {
                    "prompt_id": pids[-1],
                    "problem_id": f"prob{p:02d}",
                    "sample": k,
                    "gold": "1",
                    "parsed": "1",
                    "parse_method": "answer_is",
                    "label": label,
                    "probe_label": label,
                    "finished": True,
                    "response_tokens": r_len,
                    "capped": False,
                }
            )
            text = f"Step {p}. The answer is {'yes' if label == 'correct' else 'no'}."
            texts.append({"prompt_id": pids[-1], "response": text})
            spans.append(
                {"prompt_id": pids[-1], "window_end": end, "window_end_char": text.index("The")}
            )
    total = p_len + max(r_lens)
    width = p_len  # no padding needed: all prompts are p_len long
    h = torch.zeros((len(hs), total, d))
    for b, x in enumerate(hs):
        h[b, : x.shape[0]] = torch.tensor(x, dtype=torch.float32)
    p_lens, r_t = torch.full((len(hs),), p_len), torch.tensor(r_lens)
    positions = parse_positions(["response_mean", f"response[0..{max(r_lens) - 1}]"])
    plan = _PositionPlan.build(
        positions, width, p_lens, r_t, total, "cpu", {"pre_answer": [(0, e) for e in ends]}
    )
    vectors = plan.vectors({1: plan.read(h)})
    # the window's mean is exactly the mean of the shared tokens before the answer
    np.testing.assert_allclose(
        vectors[(1, "pre_answer")][0], hs[0][p_len : p_len + ends[0]].mean(0), rtol=1e-5
    )
    mean_only = {k: v for k, v in vectors.items() if k[1] == "response_mean"}
    tokens_only = {k: v for k, v in vectors.items() if k[1] != "response_mean"}
    act, tok = tmp_path / "act.parquet", tmp_path / "tokens.parquet"
    pq.write_table(activation_table(pids, mean_only, plan.token_index, "float32"), act)
    pq.write_table(activation_table(pids, tokens_only, plan.token_index, "float32"), tok)
    sp, gens = tmp_path / "spans.parquet", tmp_path / "generations.parquet"
    pl.DataFrame(spans).write_parquet(sp)
    pl.DataFrame(texts).write_parquet(gens)
    return act, tok, sp, gens, pl.DataFrame(rows, schema=LABEL_SCHEMA)


def _fit(tmp_path, act, tok, sp, gens, labels, **probes):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    labels.write_parquet(out / "labels.parquet")
    return fit_tribunal_probes(
        activations=act,
        labels=out / "labels.parquet",
        **{k: out / name for k, name in OUTPUTS.items()},
        layers=[1],
        aggregations=["response_mean", "pre_answer"],
        cfg=ProbesConfig(n_bootstrap=200, **probes),
        tokens_activations=tok,
        spans=sp,
        generations=gens,
    )


def test_a_feature_planted_in_answer_tokens_is_chance_for_pre_answer_perfect_for_mean(tmp_path):
    act, tok, sp, gens, labels = _planted(tmp_path)
    m = _fit(tmp_path, act, tok, sp, gens, labels, per_token=True)
    probes = m["probes"]
    assert probes["L1.response_mean"]["metrics"]["auroc"] == 1.0
    # both traces of a test problem get the same pre_answer vector: every within-problem pair
    # ties, and across problems the classes are exchangeable -> exactly chance
    pre = probes["L1.pre_answer"]["metrics"]
    assert pre["auroc"] == 0.5 and pre["auroc_ci"][0] <= 0.5 <= pre["auroc_ci"][1]
    # its text controls read the same window (the words before the answer): chance too,
    # while the whole trace's words give the answer away
    pre_words = probes["L1.pre_answer"]["controls"]["lexical"]["auroc"]
    assert pre_words == 0.5 and probes["L1.response_mean"]["controls"]["lexical"]["auroc"] == 1.0
    tok_probe = probes["L1.per_token"]
    assert tok_probe["window"] == "pre_answer" and tok_probe["metrics"]["auroc"] == 0.5
    assert tok_probe["n_test"] == probes["L1.response_mean"]["n_test"]
    # the per-token probe on every response token reads the planted answer tokens
    m2 = _fit(tmp_path, act, tok, sp, gens, labels, per_token=True, per_token_window="response")
    whole = m2["probes"]["L1.per_token"]
    assert whole["window"] == "response" and whole["metrics"]["auroc"] == 1.0
    assert whole["n_train_tokens"] > tok_probe["n_train_tokens"]
    table = pl.read_csv(tmp_path / "out" / "probe_results.csv")
    assert set(table["aggregation"]) == {"response_mean", "pre_answer", "per_token"}


def test_per_token_probe_splits_by_problem(tmp_path):
    """No problem has traces on both sides: the per-token probe's test traces are exactly the
    test traces of the trace-level probes, whose split is grouped by problem."""
    act, tok, sp, gens, labels = _planted(tmp_path)
    m = _fit(tmp_path, act, tok, sp, gens, labels, per_token=True)
    logits = pl.read_parquet(tmp_path / "out" / "probe_logits.parquet")
    split = logits.group_by("problem_id").agg(pl.col("split").n_unique())
    assert split["split"].max() == 1
    n_test_problems = logits.filter(pl.col("split") == "test")["problem_id"].n_unique()
    assert m["probes"]["L1.per_token"]["n_test"] == 2 * n_test_problems


def test_tokens_stage_on_the_stub(tmp_path, stub_dir):
    """Two traces that differ only in their answer: their pre_answer vectors are equal (the
    model is causal), their whole-response means are not; per_token writes one row per
    re-encoded response token at each layer."""
    prefix = "Let me add 2 and 3 together carefully."
    responses = [f"{prefix} The answer is 5.", f"{prefix} The answer is 9.", "no idea"]
    gens = pl.DataFrame(
        {
            "prompt_id": ["a", "b", "c"],
            "chat_prompt": ["Q: 2 + 3?\nA:"] * 3,
            "response": responses,
            "finished": [True, True, True],
            "response_tokens": pl.Series([0, 0, 0], dtype=pl.Int32),
        }
    )
    gens.write_parquet(tmp_path / "gens.parquet")
    summary = capture_tokens(
        generations=tmp_path / "gens.parquet",
        activations=tmp_path / "tokens.parquet",
        spans=tmp_path / "spans.parquet",
        provenance=tmp_path / "prov.json",
        model=ModelSpec(str(stub_dir)),
        capture=CaptureSettings(
            layers=(1, 3), aggregations=("response_mean", "pre_answer"), store_dtype="float32"
        ),
        labels_cfg=LabelsConfig(),
        per_token=True,
        batch_size=2,
    )
    spans = pl.read_parquet(tmp_path / "spans.parquet")
    assert summary["n_with_answer"] == 2 and spans["answer_start"].to_list()[2] == -1
    acts = pl.read_parquet(tmp_path / "tokens.parquet")
    for layer in (1, 3):
        pre = acts.filter((pl.col("layer") == layer) & (pl.col("position") == "pre_answer"))
        vec = {r["prompt_id"]: np.array(r["activation"]) for r in pre.iter_rows(named=True)}
        np.testing.assert_allclose(vec["a"], vec["b"], atol=1e-5)
        tokens = acts.filter((pl.col("layer") == layer) & pl.col("position").str.starts_with("r"))
        per = dict(tokens.group_by("prompt_id").len().iter_rows())
        assert per == dict(zip(spans["prompt_id"], spans["n_tokens"]))
        # the mean of the per-token rows before the window end is the pre_answer vector
        a = tokens.filter(pl.col("prompt_id") == "a").sort("token_index")
        k = spans["window_end"][0]
        np.testing.assert_allclose(
            np.stack(a["activation"].to_list())[:k].mean(0), vec["a"], rtol=1e-4, atol=1e-5
        )
    prov = json.loads((tmp_path / "prov.json").read_text())
    assert prov["per_token"] and prov["n_reencoded_differs"] == 3  # response_tokens were 0
