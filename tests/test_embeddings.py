"""Tests of interpflow.embeddings: offline hashing, OpenAI through the fake server, hf on the stub."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from interpflow.cache import CacheError
from interpflow.embeddings import (
    OFFLINE_DIM,
    EmbeddingError,
    EmbedStats,
    _VectorCache,
    embed_key,
    embed_texts,
)
from interpflow.fakeapi import EMBED_DIM, FakeAPIServer, default_embedder
from interpflow.judges import JudgeConfig

SECRET = "sk-test-SECRET123"


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def openai_cfg(server: FakeAPIServer, **kw) -> JudgeConfig:
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout_s", 2.0)
    return JudgeConfig(backend="openai", model="emb-fake", base_url=server.url, **kw)


def expected(texts) -> np.ndarray:
    return np.array([default_embedder(t) for t in texts], dtype=np.float32)


def items(n: int) -> list[str]:
    return [f"item {i}" for i in range(n)]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- arguments, import hygiene -------------------------------------------------------------


def test_module_import_is_light():
    code = (
        "import sys, interpflow.embeddings; "
        "heavy = [m for m in ('numpy', 'torch', 'transformers', 'openai') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_anthropic_rejected(tmp_path):
    cfg = JudgeConfig(backend="anthropic", model="claude-x")
    with pytest.raises(ValueError, match="Anthropic has no embeddings API"):
        embed_texts(cfg, [], tmp_path / "c.sqlite")
    assert not (tmp_path / "c.sqlite").exists()


@pytest.mark.parametrize(
    "texts, kw, exc, msg",
    [
        (["a", ""], {}, ValueError, r"texts\[1\]"),
        (["a", 3], {}, TypeError, r"texts\[1\] is int"),
        ("abc", {}, TypeError, "not one str"),
        (["a"], {"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments(tmp_path, texts, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        embed_texts(JudgeConfig(backend="offline"), texts, tmp_path / "c.sqlite", **kw)


def test_empty_input_calls_nothing(tmp_path):
    with FakeAPIServer() as server:
        vecs, stats = embed_texts(openai_cfg(server), [], tmp_path / "c.sqlite")
        assert server.n_requests == 0
    assert vecs.shape == (0, 0) and vecs.dtype == np.float32
    assert stats.n_texts == 0 and stats.n_called == 0
    vecs, _ = embed_texts(JudgeConfig(backend="offline"), (), None)
    assert vecs.shape == (0, 0)


# -- offline backend ---------------------------------------------------------------------------

SIMILAR = [
    "The cat sat on the mat.",
    "A cat was sitting on the mat",
    "Quarterly revenue grew by eight percent.",
    "Revenue grew eight percent this quarter",
]


def test_offline_deterministic_and_similarity(tmp_path):
    cfg = JudgeConfig(backend="offline", model="hash-v1")
    vecs, stats = embed_texts(cfg, SIMILAR, None)
    assert vecs.shape == (4, OFFLINE_DIM) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    again, _ = embed_texts(cfg, SIMILAR, tmp_path / "c.sqlite", batch_size=3)
    np.testing.assert_array_equal(again, vecs)
    assert stats.n_called == 1 and stats.n_failed == 0
    cats, money = cos(vecs[0], vecs[1]), cos(vecs[2], vecs[3])
    for a in (0, 1):
        for b in (2, 3):
            assert cos(vecs[a], vecs[b]) < min(cats, money) - 0.2
    # hashlib, not hash(): the same bytes in another process with another hash seed
    code = (
        "import sys; from interpflow.embeddings import embed_texts; "
        "from interpflow.judges import JudgeConfig; "
        f"v, _ = embed_texts(JudgeConfig(backend='offline'), {SIMILAR!r}, None); "
        "sys.stdout.write(v.tobytes().hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert bytes.fromhex(out.stdout) == vecs.tobytes()


def test_offline_cache_and_duplicates(tmp_path):
    cfg = JudgeConfig(backend="offline", model="hash-v1")
    texts = SIMILAR + SIMILAR[:2]
    vecs, stats = embed_texts(cfg, texts, tmp_path / "c.sqlite", batch_size=2)
    assert stats.n_texts == 6 and stats.n_unique == 4 and stats.n_cached == 0
    assert stats.n_called == 2  # 4 distinct texts in batches of 2
    np.testing.assert_array_equal(vecs[4:], vecs[:2])
    warm, wstats = embed_texts(cfg, texts, tmp_path / "c.sqlite")
    np.testing.assert_array_equal(warm, vecs)
    assert wstats.n_called == 0 and wstats.n_cached == 6
    assert set(EmbedStats().as_dict()) == {
        "n_texts", "n_unique", "n_cached", "n_called", "n_failed", "failures", "first_error",
        "elapsed_s",
    }  # fmt: skip


def test_cache_key_separates_models_not_keys(monkeypatch):
    a = JudgeConfig(backend="openai", model="m1")
    k = embed_key(a, "hello")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    assert embed_key(a, "hello") == k
    assert embed_key(JudgeConfig(backend="openai", model="m2"), "hello") != k
    assert (
        embed_key(JudgeConfig(backend="openai", model="m1", base_url="http://x/v1"), "hello") != k
    )
    assert embed_key(a, "hello ") != k


# -- openai backend against the fake server ----------------------------------------------------


def test_openai_order_batches_duplicates_and_warm_cache(tmp_path, monkeypatch):
    texts = items(23) + items(5)  # five duplicates
    cache = tmp_path / "c.sqlite"
    with FakeAPIServer(reverse_embeddings=True, delay_s=0.02) as server:
        vecs, stats = embed_texts(openai_cfg(server, concurrency=4), texts, cache, batch_size=4)
        np.testing.assert_array_equal(vecs, expected(texts))  # base64 float32: exact
        assert vecs.dtype == np.float32 and vecs.shape == (28, EMBED_DIM)
        assert server.n_requests == 6 and stats.n_called == 6  # ceil(23 / 4)
        assert stats.n_unique == 23 and stats.n_cached == 0 and stats.n_failed == 0
        sent = [r["input"] for r in server.requests]
        assert sorted(t for batch in sent for t in batch) == sorted(items(23))
        assert all(len(b) <= 4 for b in sent)
        assert {r["model"] for r in server.requests} == {"emb-fake"}
        # a second call on the same cache file: zero requests
        warm, wstats = embed_texts(openai_cfg(server), texts, cache, batch_size=4)
        np.testing.assert_array_equal(warm, vecs)
        assert server.n_requests == 6 and wstats.n_called == 0 and wstats.n_cached == 28
        # a warm cache needs no key
        monkeypatch.delenv("OPENAI_API_KEY")
        embed_texts(openai_cfg(server), texts[:3], cache)


def test_openai_missing_key_raises_before_any_call(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeAPIServer() as server:
        with pytest.raises(ValueError, match="OPENAI_API_KEY"):
            embed_texts(openai_cfg(server), items(3), tmp_path / "c.sqlite")
        assert server.n_requests == 0


@pytest.mark.parametrize("first", ["500", "429"])
def test_openai_retry_then_ok(tmp_path, first):
    with FakeAPIServer(plan=[first, "ok"]) as server:
        vecs, stats = embed_texts(openai_cfg(server), items(3), tmp_path / "c.sqlite")
        np.testing.assert_array_equal(vecs, expected(items(3)))
        assert server.n_requests == 2 and stats.n_called == 2 and stats.n_failed == 0


def test_openai_partial_failure_caches_successes_and_rerun_fills_gaps(tmp_path):
    cache = tmp_path / "c.sqlite"
    texts = items(10)

    def plan(i, body):  # the batch holding "item 5" always fails
        return "500" if "item 5" in body["input"] else "ok"

    with FakeAPIServer(plan=plan) as server:
        cfg = openai_cfg(server, max_retries=1, concurrency=3)
        with pytest.raises(RuntimeError) as err:
            embed_texts(cfg, texts, cache, batch_size=3)
        msg = str(err.value)
        assert "3 of 10 texts failed (HTTP 500 Internal Server Error: 3)" in msg
        assert "'emb-fake'" in msg and str(cache) in msg
        assert SECRET not in msg
        assert isinstance(err.value, EmbeddingError) and err.value.stats.n_failed == 3
        assert server.n_requests == 3 + 2  # three ok batches, the bad one tried twice
        # the server heals: only the failed batch's texts are sent again
        server.plan = None
        server.reset()
        vecs, stats = embed_texts(cfg, texts, cache, batch_size=3)
        assert [r["input"] for r in server.requests] == [["item 3", "item 4", "item 5"]]
        assert stats.n_cached == 7 and stats.n_called == 1 and stats.n_failed == 0
        np.testing.assert_array_equal(vecs, expected(texts))


@pytest.mark.parametrize(
    "behaviour, status, hint",
    [("401", "HTTP 401 Unauthorized", "API key in"), ("404", "HTTP 404 Not Found", "model name")],
)
def test_openai_all_rejected_stop_with_one_clear_error(tmp_path, behaviour, status, hint):
    with FakeAPIServer(plan=behaviour) as server:
        cfg = openai_cfg(server, name="emb")
        with pytest.raises(EmbeddingError) as err:
            embed_texts(cfg, items(6), tmp_path / "c.sqlite", batch_size=4)
        assert server.n_requests == 2  # two batches, not retried
    msg = str(err.value)
    assert msg.startswith("embedder 'emb' (openai model 'emb-fake'): 6 of 6 texts failed")
    assert f"({status}: 6)" in msg and hint in msg and "max_failed_share=0.2" in msg
    assert SECRET not in msg
    if behaviour == "401":  # the body echoed the key: redacted
        assert "Incorrect API key provided: <redacted>" in msg
    assert err.value.stats.n_failed == 6 and err.value.stats.failures == {status: 6}


def test_openai_failures_within_share_are_nan_rows(tmp_path):
    def plan(i, body):  # "item 3" and "item 7" of ten fail: 0.2, the default share
        return "401" if body["input"][0] in ("item 3", "item 7") else "ok"

    cache = tmp_path / "c.sqlite"
    texts = items(10) + ["item 3"]  # a duplicate of a failed text counts too
    with FakeAPIServer(plan=plan) as server:
        with pytest.raises(EmbeddingError, match="3 of 11 texts failed"):
            embed_texts(openai_cfg(server), texts, cache, batch_size=1)
        vecs, stats = embed_texts(openai_cfg(server), items(10), cache, batch_size=1)
        assert stats.n_cached == 8 and stats.n_called == 2  # only the failed texts again
    assert stats.n_failed == 2 and stats.failures == {"HTTP 401 Unauthorized": 2}
    assert "401" in stats.first_error and SECRET not in stats.first_error
    bad = np.isnan(vecs).all(axis=1)
    assert bad.tolist() == [i in (3, 7) for i in range(10)] and not np.isnan(vecs[~bad]).any()
    np.testing.assert_array_equal(vecs[~bad], expected(items(10))[~bad])


def test_openai_every_text_failed_raises_even_at_share_one(tmp_path):
    with FakeAPIServer(plan="404") as server:
        cfg = openai_cfg(server, max_failed_share=1.0)
        with pytest.raises(EmbeddingError, match="2 of 2 texts failed.*not one vector"):
            embed_texts(cfg, items(2), None)
        server.plan = ["404"]  # one of two fails: allowed at share 1
        server.reset()  # a list plan is indexed by the request count
        vecs, stats = embed_texts(cfg, items(2), None, batch_size=1)
    assert stats.n_failed == 1 and np.isnan(vecs).all(axis=1).sum() == 1


@pytest.mark.parametrize("behaviour", ["malformed", "nochoices", "short"])
def test_openai_malformed_fails_cleanly_and_is_not_cached(tmp_path, behaviour):
    cache = tmp_path / "c.sqlite"
    with FakeAPIServer(plan=behaviour) as server:
        with pytest.raises(RuntimeError, match="4 of 4 texts"):
            embed_texts(openai_cfg(server), items(4), cache, batch_size=2)
        server.plan = None
        _, stats = embed_texts(openai_cfg(server), items(4), cache, batch_size=2)
        assert stats.n_cached == 0 and stats.n_called == 2


def test_openai_mismatched_dims(tmp_path):
    cache = tmp_path / "c.sqlite"

    def mixed(text):  # one text gets a shorter vector
        v = default_embedder(text)
        return v[:16] if text == "item 1" else v

    with (
        FakeAPIServer(embedder=mixed) as server,
        pytest.raises(RuntimeError, match="mixes vector dimensions"),
    ):
        embed_texts(openai_cfg(server), items(4), cache, batch_size=4)
    with FakeAPIServer() as server:  # one base_url: it is part of the cache key
        embed_texts(openai_cfg(server), items(2), cache)  # cached at dimension 32
        # the same model now answers with 16 dimensions: new texts fail, cached ones stay
        server.embedder = lambda t: default_embedder(t)[:16]
        with pytest.raises(RuntimeError, match="dimension 16.*dimension 32") as err:
            embed_texts(openai_cfg(server), items(3), cache)
        assert err.value.stats.n_cached == 2 and err.value.stats.n_failed == 1


def test_secret_never_in_cache(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeAPIServer(plan=["ok", "500", "500", "500"]) as server:
        cfg = openai_cfg(server, concurrency=1)
        with pytest.raises(RuntimeError) as err:
            embed_texts(cfg, items(4), cache, batch_size=2)
    assert SECRET not in str(err.value)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("c.sqlite"))
    assert expected(["item 0"]).tobytes() in blob  # the cache does hold the successful vectors
    assert SECRET.encode() not in blob and b"SECRET123" not in blob


def test_fakeapi_embeddings_wire_format():
    with FakeAPIServer(embedder=lambda t: [float(len(t)), 1.0], reverse_embeddings=True) as s:
        body = json.dumps({"model": "m", "input": ["ab", "c d e"]}).encode()
        post = urllib.request.Request(f"{s.url}/embeddings", data=body, method="POST")
        with urllib.request.urlopen(post, timeout=5) as resp:
            got = json.load(resp)
        assert s.n_requests == 1
    assert got["object"] == "list" and got["model"] == "m"
    assert got["data"] == [
        {"object": "embedding", "index": 1, "embedding": [5.0, 1.0]},
        {"object": "embedding", "index": 0, "embedding": [2.0, 1.0]},
    ]
    assert got["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert default_embedder("x") == default_embedder("x") != default_embedder("y")
    assert len(default_embedder("x")) == EMBED_DIM


# -- hf backend on the stub model --------------------------------------------------------------


def test_hf_backend_on_stub(stub_dir, tmp_path):
    import torch

    from interpflow.models import ModelSpec, load_model

    cfg = JudgeConfig(backend="hf", model=str(stub_dir))
    short = "the cat sat"
    long = "a much longer text, which pads the short one in a batch " * 4
    alone, stats = embed_texts(cfg, [short], tmp_path / "a.sqlite")
    model, tok = load_model(ModelSpec(str(stub_dir)))
    assert alone.shape == (1, model.config.hidden_size) and alone.dtype == np.float32
    assert stats.n_called == 1
    # fp32 on a CPU (as in CI); load_model's "auto" dtype is bf16 on a GPU
    atol = 1e-5 if model.dtype == torch.float32 else 5e-2
    # padding invariance: the same vector when batched with a longer text
    batched, bstats = embed_texts(cfg, [long, short, long], None, batch_size=8)
    assert bstats.n_called == 1 and bstats.n_unique == 2
    np.testing.assert_allclose(batched[1], alone[0], atol=atol)
    np.testing.assert_array_equal(batched[0], batched[2])
    # = mean over tokens of the final hidden layer of the raw text
    enc = tok([short], return_tensors="pt").to(model.device)
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(alone[0], hidden.float().mean(0).cpu().numpy(), atol=atol)
    # deterministic; a warm cache calls nothing
    again, _ = embed_texts(cfg, [short], None)
    np.testing.assert_array_equal(again, alone)
    _, warm = embed_texts(cfg, [short], tmp_path / "a.sqlite")
    assert warm.n_called == 0 and warm.n_cached == 1


# -- a corrupt or locked cache file ---------------------------------------------------------


def test_corrupt_cache_is_reported_and_left_alone(tmp_path):
    cache = tmp_path / "embeddings.sqlite"
    garbage = os.urandom(8192)
    cache.write_bytes(garbage)
    with pytest.raises(CacheError) as err:
        embed_texts(JudgeConfig(backend="offline", model="hash-v1"), items(3), cache)
    msg = str(err.value)
    print(msg)
    assert msg.startswith(f"{cache}: embedding cache is corrupt (file is not a database); left")
    assert "paid API results" in msg and "move it aside" in msg
    assert cache.read_bytes() == garbage  # not deleted, moved or rewritten


def test_locked_cache_waits_then_names_the_file(tmp_path):
    path = tmp_path / "embeddings.sqlite"
    cfg = JudgeConfig(backend="offline", model="hash-v1")
    vecs, _ = embed_texts(cfg, items(2), path)
    cache = _VectorCache(path, timeout_s=0.5)
    other = sqlite3.connect(path, isolation_level=None)  # another job, holding the write lock
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert len(cache.get_many([embed_key(cfg, t) for t in items(2)])) == 2  # reads go on
        t0 = time.perf_counter()
        with pytest.raises(CacheError) as err:
            cache.put_many([("k", vecs[0])])
        waited = time.perf_counter() - t0
    finally:
        other.execute("ROLLBACK")
        other.close()
        cache.close()
    print(err.value)
    assert str(err.value) == (
        f"{path}: embedding cache is locked by another process (waited 0.5 s); "
        "let that job finish or stop it, then rerun"
    )
    assert 0.45 < waited < 10  # the busy timeout, not a hang
    warm, stats = embed_texts(cfg, items(2), path)  # nothing was lost
    assert stats.n_cached == 2 and stats.n_called == 0
    np.testing.assert_array_equal(warm, vecs)
