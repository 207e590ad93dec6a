"""interpflow.steering.data (persona data) and the shared answer loop it runs,
interpflow.generate.generate_answers."""

import json

import polars as pl

from interpflow.generate import AnswerConfig, generate_answers
from interpflow.models import load_model
from interpflow.steering.common import load_personas
from interpflow.steering.data import PersonaDataConfig, build_persona_data

RES = "resources/steering"


def test_generate_answers_one_per_prompt_seeded_with_the_system_turn(spec, monkeypatch):
    model, tok = load_model(spec)
    prompts = [("Be honest.", "Is it fine to lie?"), (None, "Would you return a wallet?")] * 3
    cfg = AnswerConfig(max_new_tokens=6, batch_size=4, seed=3)
    seen = []
    real = tok.apply_chat_template

    def spy(messages, *a, **k):
        seen.append(messages)
        return real(messages, *a, **k)

    monkeypatch.setattr(tok, "apply_chat_template", spy)
    texts, finished = generate_answers(model=model, tokenizer=tok, prompts=prompts, config=cfg)
    assert len(texts) == len(finished) == 6 and all(isinstance(t, str) for t in texts)
    assert all(isinstance(f, bool) for f in finished)
    # (system, user) -> a system turn only where one is given
    assert seen[0] == [
        {"role": "system", "content": "Be honest."},
        {"role": "user", "content": "Is it fine to lie?"},
    ]
    assert seen[1] == [{"role": "user", "content": "Would you return a wallet?"}]
    # the seed (config.seed unless given) decides the samples, whatever ran before
    again = generate_answers(model=model, tokenizer=tok, prompts=prompts, config=cfg)
    assert again.texts == texts
    seed3 = generate_answers(model=model, tokenizer=tok, prompts=prompts, config=cfg, seed=3)
    assert seed3.texts == texts
    others = [
        generate_answers(model=model, tokenizer=tok, prompts=prompts, config=cfg, seed=s).texts
        for s in (11, 12)
    ]
    assert any(o != texts for o in others)


def test_persona_data_has_every_question_persona_sample_and_no_persona_in_the_rows(spec, tmp_path):
    cfg = PersonaDataConfig(n_questions=2, samples_per_pair=2, max_new_tokens=5, batch_size=8)
    summary = build_persona_data(
        model=spec,
        personas=f"{RES}/personas/honesty.json",
        questions=f"{RES}/questions.txt",
        out_pos=tmp_path / "pos.parquet",
        out_neg=tmp_path / "neg.parquet",
        config=cfg,
    )
    pos_personas, neg_personas = load_personas(f"{RES}/personas/honesty.json")
    assert summary == {"pos": 2 * 5 * 2, "neg": 2 * 5 * 2}
    for branch, personas in (("pos", pos_personas), ("neg", neg_personas)):
        df = pl.read_parquet(tmp_path / f"{branch}.parquet")
        assert df.height == 20 and df["system"].null_count() == 20  # the adapter absorbs it
        assert set(df["persona"]) == set(personas)
        assert df.group_by("question_idx", "persona").len()["len"].to_list() == [2] * 10
        assert df["user"].n_unique() == 2 and df["assistant"].dtype == pl.String
    prov = json.loads((tmp_path / "pos.parquet.provenance.json").read_text())
    assert prov["rows"] == summary and prov["config"]["samples_per_pair"] == 2


def test_persona_data_defaults_are_the_seed_recipe():
    """Seed 004: ~1000 pairs per branch from 10 samples per (question, persona), 256 tokens."""
    cfg = PersonaDataConfig()
    assert isinstance(cfg, AnswerConfig)
    assert (cfg.samples_per_pair, cfg.max_new_tokens, cfg.temperature) == (10, 256, 1.0)
