"""interpflow.steering.common: resources, the Yes/No scorer, weight steering."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from interpflow.models import load_model, load_tokenizer
from interpflow.steering.common import (
    WeightSteerer,
    YesNoScorer,
    load_eval_set,
    load_personas,
    prompt_with_prefix,
)

RES = "resources/steering"
#: The generation-prompt part of Qwen3's chat template (enable_thinking false writes an empty
#: think block after the assistant header).
QWEN3_LIKE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
THINK = "<think>\n\n</think>\n\n"


def test_shipped_resources_parse():
    pos, neg = load_personas(f"{RES}/personas/honesty.json")
    assert len(pos) == len(neg) == 5
    dd = load_eval_set("dilemmas", f"{RES}/dilemmas.jsonl")
    assert dd.height == 24 and set(dd["label"].to_list()) == {-1, 1}
    assert "Would you take this action?" in dd["question"][0]
    assert load_eval_set("id", f"{RES}/id_eval.jsonl").height == 12


def test_bad_eval_rows_name_file_and_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "honesty_label": 1}\n{"question": "r", "honesty_label": 0}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: row 2: label \(or honesty_label\)"):
        load_eval_set("x", bad)
    bad.write_text('{"question": "q", "honesty_label": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_eval_set("x", bad)
    with pytest.raises(FileNotFoundError, match="steering.axis"):
        load_personas(tmp_path / "nope.json")


def test_batched_scores_equal_single(spec):
    model, tok = load_model(spec)
    qs = ["Is it fine to lie?", "Would you return a wallet you found on a long and empty street?"]
    batched = YesNoScorer(model, tok, batch_size=8).score(qs)
    single = [YesNoScorer(model, tok, batch_size=1).score([q]) for q in qs]
    for i in range(2):
        assert batched[0][i] == pytest.approx(single[i][0][0], abs=1e-5)
        assert batched[1][i] == pytest.approx(single[i][1][0], abs=1e-5)
    assert np.all(batched[0] < 0) and np.all(batched[1] < 0)


def test_weight_steerer_applies_and_restores(spec):
    model, _ = load_model(spec)
    name = "model.layers.1.self_attn.q_proj.weight"
    w0 = dict(model.named_parameters())[name].detach().clone()
    dw = {name: torch.randn_like(w0)}
    steer = WeightSteerer(model, dw)
    steer.apply(-0.5)
    assert torch.allclose(dict(model.named_parameters())[name], w0 - 0.5 * dw[name])
    steer.apply(2.0)  # from the original, not cumulative
    assert torch.allclose(dict(model.named_parameters())[name], w0 + 2.0 * dw[name])
    steer.restore()
    assert torch.equal(dict(model.named_parameters())[name], w0)
    with pytest.raises(ValueError, match="lacks"):
        WeightSteerer(model, {"model.nope.weight": w0})


def test_the_think_block_comes_once_from_the_model_chat_template(spec):
    """Qwen3 with enable_thinking false on its model declaration: the template writes the empty
    think block (eval prompts included); an answer_prefix repeating it is an error, not a
    doubled block."""
    model, plain = load_model(spec)
    tok = load_tokenizer(replace(spec, chat_template={"enable_thinking": False}))
    for t in (tok, plain):
        t.chat_template = QWEN3_LIKE
    prompt = prompt_with_prefix(tok, "Is it fine to lie?", None, "")
    assert prompt.endswith("<|im_start|>assistant\n" + THINK) and prompt.count("<think>") == 1
    with pytest.raises(ValueError, match="answer_prefix.*already ends the prompt"):
        prompt_with_prefix(tok, "Is it fine to lie?", None, THINK)
    with pytest.raises(ValueError, match="answer_prefix"):
        YesNoScorer(model, tok, THINK).score(["Is it fine to lie?"])
    # without the option the template writes no think block: the prefix is appended once
    assert prompt_with_prefix(plain, "q", None, THINK).count("<think>") == 1


def test_hub_eval_set_without_datasets_names_the_key(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError("no datasets")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match="steering.eval.sets.dilemmas"):
        load_eval_set("dilemmas", "hf:wassname/daily_dilemmas-self-honesty:honesty_eval:train")


def test_eval_rows_take_label_or_honesty_label(tmp_path):
    f = tmp_path / "agree.jsonl"
    f.write_text('{"question": "q", "label": 1}\n{"question": "r", "honesty_label": -1}\n')
    df = load_eval_set("agree", f)
    assert df["label"].to_list() == [1, -1]
    f.write_text('{"question": "q", "label": 2}\n')
    with pytest.raises(ValueError, match=r"row 1: label \(or honesty_label\)"):
        load_eval_set("agree", f)
