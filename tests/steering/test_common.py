"""interpflow.steering.common: resources, the Yes/No scorer, weight steering."""

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from interpflow.models import load_model, load_tokenizer
from interpflow.steering.common import (
    UNIT_SEP,
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
    assert dd.height == 80 and set(dd["label"].to_list()) == {-1, 1}
    # 40 dilemmas, each one honest (+1) and one dishonest (-1) action: one unit of two rows
    units = dd["row_id"].str.split(UNIT_SEP).list.first()
    assert units.n_unique() == 40
    per = dd.with_columns(unit=units).group_by("unit").agg(pl.col("label").sort())
    assert all(v.to_list() == [-1, 1] for v in per["label"])
    assert "Would you take this action?" in dd["question"][0]
    assert load_eval_set("id", f"{RES}/id_eval.jsonl").height == 12
    # seed 004's sycophancy ID set beside honesty: the id schema, half "the user is wrong"
    # (agreeing is sycophantic: label -1), half "the user is right" (+1)
    syc = load_eval_set("sycophancy", f"{RES}/sycophancy_id.jsonl")
    assert syc.height == 20 and syc["label"].sum() == 0
    assert all(q.endswith("Do you agree?") for q in syc["question"])
    assert syc.filter(pl.col("row_id") == "syc-0")["label"].item() == -1  # the Great Wall


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


def _param(model, name):
    return dict(model.named_parameters())[name]


def _logits(model, tok):
    enc = tok(["Is it fine to lie? Answer Yes or No."], return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits


def test_weight_steerer_applies_and_restores(spec):
    model, _ = load_model(spec)
    name = "model.layers.1.self_attn.q_proj.weight"
    w0 = _param(model, name).detach().clone()
    dw = {name: torch.randn_like(w0)}
    steer = WeightSteerer(model, dw)
    steer.apply(-0.5)
    assert torch.allclose(_param(model, name), w0 - 0.5 * dw[name])
    steer.apply(2.0)  # from the original, not cumulative
    assert torch.allclose(_param(model, name), w0 + 2.0 * dw[name])
    steer.restore()
    assert torch.equal(_param(model, name), w0)
    with pytest.raises(ValueError, match="lacks"):
        WeightSteerer(model, {"model.nope.weight": w0})


BF16_NAMES = ("model.layers.1.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight")


def test_bf16_steering_is_one_rounding_of_the_fp32_sum(spec):
    """Issue 13 item 5, on a bf16 model: α = 0 is the base model bit for bit (weights and
    logits); α ≠ 0 sets every steered weight to (W0.float() + α·dW).to(bf16) bit for bit (one
    rounding of the fp32 sum); restore() gives W0 back bit for bit."""
    model, tok = load_model(replace(spec, dtype="bfloat16"))
    w0 = {n: _param(model, n).detach().clone() for n in BF16_NAMES}
    assert all(w.dtype == torch.bfloat16 for w in w0.values())
    base_logits = _logits(model, tok)
    g = torch.Generator().manual_seed(0)
    dw = {n: 1e-3 * torch.randn(w.shape, generator=g) for n, w in w0.items()}  # fp32, small
    steer = WeightSteerer(model, dw)
    steer.apply(0.0)
    assert all(torch.equal(_param(model, n), w0[n]) for n in BF16_NAMES)
    assert torch.equal(_logits(model, tok), base_logits)
    for alpha in (1.0, -0.5, 2.0):
        steer.apply(alpha)
        for n in BF16_NAMES:
            want = (w0[n].float() + alpha * dw[n]).to(torch.bfloat16)
            assert _param(model, n).dtype == torch.bfloat16
            assert torch.equal(_param(model, n), want), (n, alpha)
        assert not torch.equal(_logits(model, tok), base_logits)
    steer.restore()
    assert all(torch.equal(_param(model, n), w0[n]) for n in BF16_NAMES)
    assert torch.equal(_logits(model, tok), base_logits)


def test_bf16_steering_differs_from_the_naive_bf16_sum_where_rounding_matters(spec):
    """A constructed weight where the bf16 sum rounds differently: W0 = 1 (bf16 spacing 2⁻⁷
    there), dW = 2⁻⁸ + 2⁻²⁰ (just over half a spacing). fp32 sum then one rounding: 1 + 2⁻⁷.
    The naive bf16 sum first rounds dW to 2⁻⁸ and then ties 1 + 2⁻⁸ to even: 1, the steering
    lost. Elements with dW = 0 stay W0."""
    model, _ = load_model(replace(spec, dtype="bfloat16"))
    name = BF16_NAMES[0]
    p = _param(model, name)
    with torch.no_grad():
        p.fill_(1.0)
    delta = torch.zeros(p.shape)
    delta[0, :4] = 2.0**-8 + 2.0**-20
    naive = p.detach() + (1.0 * delta).to(torch.bfloat16)
    assert torch.equal(naive[0, :4], torch.ones(4, dtype=torch.bfloat16))  # the steering lost
    steer = WeightSteerer(model, {name: delta})
    steer.apply(1.0)
    got = _param(model, name)
    assert torch.equal(got[0, :4], torch.full((4,), 1.0 + 2.0**-7, dtype=torch.bfloat16))
    assert torch.equal(got[1:], torch.ones_like(got[1:]))
    assert not torch.equal(got, naive)
    steer.restore()
    assert torch.equal(_param(model, name), torch.ones_like(got))


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


# --- seed 004's branching-suffix question pool (issue 13 item 15) ------------------------------

POOL = """[
  {
    "cat": "fact",
    "suffix": "The human brain controls the body's functions.. ",
    "user_msg": "Tell me an interesting fact."
  },
  {"cat": "reasoning_trace", "suffix": "<think>\\n Let me check the numbers.\\n</think>\\n So",
   "user_msg": "How much is 2 + 2?"},
  {"cat": "code", "suffix": "<think></think>  ", "user_msg": "Write some code."},
  {"suffix": "Once upon a time, ", "user_msg": "Tell me a story."}
]
"""


def test_branching_suffix_pool_is_a_question_source(tmp_path):
    from interpflow.steering.common import load_question_pool, load_questions, load_suffix_pool

    f = tmp_path / "branching_suffixes.json"
    f.write_text(POOL)
    pool = load_suffix_pool(f)
    # think tags removed and stripped as the seed does; the entry left empty is dropped
    assert [e["suffix"] for e in pool] == [
        "The human brain controls the body's functions..",
        "Let me check the numbers.\n\n So",
        "Once upon a time,",
    ]
    assert [e["cat"] for e in pool] == ["fact", "reasoning_trace", ""]
    assert load_questions(f) == [
        "Tell me an interesting fact.",
        "How much is 2 + 2?",
        "Tell me a story.",
    ]
    assert load_questions(f, 2) == load_questions(f)[:2]
    assert load_question_pool(f)[2] == ("Tell me a story.", "Once upon a time,")
    txt = tmp_path / "q.txt"
    txt.write_text("# a comment\nIs it fine to lie?\n\nWould you?\n")
    assert load_question_pool(txt) == [("Is it fine to lie?", ""), ("Would you?", "")]


@pytest.mark.parametrize(
    "text,needle",
    [
        (
            '{"user_msg": "q", "suffix": "s"}',
            r"pool.json:1: a branching-suffix pool is a JSON array",
        ),
        (
            '[\n {"user_msg": "q", "suffix": "s"},\n {"user_msg": "q"}\n]',
            r"pool.json:3: entry 2: 'suffix' must be a string",
        ),
        (
            '[\n {"user_msg": "q", "suffix": "s"},\n\n "just text"\n]',
            r"pool.json:4: entry 2: must be an object",
        ),
        ('[\n {"user_msg": " ", "suffix": "s"}\n]', r"pool.json:2: entry 1: 'user_msg' is empty"),
        (
            '[\n {"user_msg": "q", "suffix": "s", "cat": 3}\n]',
            r"pool.json:2: entry 1: 'cat' must be a string",
        ),
        (
            '[\n {"user_msg": "q", "suffix": "s"}\n {"user_msg": "r", "suffix": "s"}]',
            r"pool.json:3: expected ','",
        ),
        (
            '[\n {"user_msg": "q", "suffix": "s"},\n {"user_msg": "q" "suffix": "s"}\n]',
            r"pool.json:3: not valid JSON",
        ),
        ("[]", r"pool.json: the branching-suffix pool has no entries"),
    ],
)
def test_bad_suffix_pool_names_file_and_line(tmp_path, text, needle):
    from interpflow.steering.common import load_questions

    f = tmp_path / "pool.json"
    f.write_text(text)
    with pytest.raises(ValueError, match=needle):
        load_questions(f)


def test_missing_question_pool_names_the_key(tmp_path):
    from interpflow.steering.common import load_questions

    with pytest.raises(FileNotFoundError, match="steering.questions"):
        load_questions(tmp_path / "nope.json")


def test_repe_reads_the_states_after_the_suffix(spec, tmp_path, monkeypatch):
    """With a branching-suffix pool the RepE prompts are persona + user_msg + the suffix in the
    assistant turn (the seed's repeng convention)."""
    from interpflow.steering import baselines

    f = tmp_path / "pool.json"
    f.write_text(POOL)
    seen = []
    real = baselines.last_token_states

    def spy(model, tok, chats, batch_size=16):
        seen.extend(chats)
        return real(model, tok, chats, batch_size)

    monkeypatch.setattr(baselines, "last_token_states", spy)
    baselines.fit_repe(
        model=spec,
        loaded=load_model(spec),
        personas=f"{RES}/personas/honesty.json",
        questions=f,
        out_directions=tmp_path / "d.safetensors",
        out_norms=tmp_path / "d.json",
    )
    assert len(seen) == 2 * 1 * 3  # the first persona pair (the default, as the seed) x 3 entries
    assert seen[2].endswith("Tell me a story.<|im_end|>\n<|im_start|>assistant\nOnce upon a time,")
    assert "Pretend you're an honest person." in seen[0]
