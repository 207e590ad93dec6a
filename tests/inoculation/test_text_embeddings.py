"""Unit tests: the text-embeddings stage against the fake OpenAI server."""

from __future__ import annotations

import json

import polars as pl
import pytest

from interpflow.fakeapi import FakeAPIServer
from interpflow.inoculation.rephrasings import make_rephrasings
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import JudgeConfig

PROMPTS = {
    "clown": InocPrompt("clown", "Playful", "You are a clown."),
    "fr": InocPrompt("fr", "French", "Answer in French."),
}
OFFLINE = JudgeConfig(backend="offline", model="test")


def test_text_embeddings_drop_failed_texts_within_the_share(tmp_path, monkeypatch):
    from dataclasses import replace

    from interpflow.embeddings import EmbeddingError
    from interpflow.inoculation.embedding_stats import text_embedding_vectors
    from interpflow.inoculation.text_embeddings import text_embeddings_stage

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    reph = tmp_path / "r.parquet"
    make_rephrasings(
        prompts=list(PROMPTS.values()),
        n=4,
        judge=OFFLINE,
        cache=None,
        out=reph,
        out_summary=tmp_path / "r.json",
    )
    fr0 = pl.read_parquet(reph).filter(pl.col("prompt_key") == "fr")["text"][0]
    failing = {"You are a clown.", fr0}  # 2 of 10 texts: the default share 0.2

    def plan(i, body):
        return "404" if body["input"][0] in failing else "ok"

    out = tmp_path / "emb.parquet"
    with FakeAPIServer(plan=plan) as server:
        cfg = JudgeConfig(backend="openai", model="e", base_url=server.url, name="emb")
        args = {"prompts": list(PROMPTS.values()), "rephrasings": reph, "n_rephrasings": None}
        summary = text_embeddings_stage(
            **args,
            embedder=cfg,
            cache=None,
            out=out,
            out_summary=tmp_path / "emb.json",
            batch_size=1,
        )
        with pytest.raises(EmbeddingError, match="embedder 'emb' .*2 of 10 texts failed"):
            text_embeddings_stage(
                **args,
                embedder=replace(cfg, max_failed_share=0.1),
                cache=None,
                out=tmp_path / "x.parquet",
                out_summary=tmp_path / "x.json",
                batch_size=1,
            )
        assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "x.json").exists()
    assert summary["n_texts"] == 8 and summary["n_failed"] == 2
    assert json.loads((tmp_path / "emb.json").read_text()) == summary
    df = pl.read_parquet(out)
    assert not set(df["text"]) & failing and df["vector"].list.len().unique().to_list() == [32]
    prompts, reps = text_embedding_vectors(df)
    assert set(prompts) == {"fr"} and reps["fr"].shape == (3, 32)  # the clown is left out
