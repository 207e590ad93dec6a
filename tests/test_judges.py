"""Tests of the judge layer against a real local HTTP server (interpflow.fakeapi)."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import time

import pytest

from interpflow.cache import CacheError
from interpflow.fakeapi import FakeAPIServer
from interpflow.judges import (
    Judge,
    JudgeConfig,
    JudgeFailureError,
    JudgeReply,
    JudgeRequest,
    _Cache,
    check_failures,
    failure_reason,
    request_key,
    require_api_key,
)
from interpflow.stats import digit_expected_value

SECRET = "sk-test-SECRET123"


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)


def openai_cfg(server: FakeAPIServer, **kw) -> JudgeConfig:
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout_s", 0.5)
    return JudgeConfig(backend="openai", model="gpt-fake", base_url=server.url, **kw)


def reqs(n: int, **kw) -> list[JudgeRequest]:
    return [JudgeRequest(system="Rate it.", user=f"item {i}", **kw) for i in range(n)]


def echo(request_json: dict) -> str:
    return "echo:" + request_json["messages"][-1]["content"]


# -- config, keys, import hygiene ----------------------------------------------------------


def test_module_import_is_light():
    code = (
        "import sys, interpflow.judges; "
        "heavy = [m for m in ('torch', 'transformers', 'openai', 'anthropic') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"backend": "nope"}, "unknown judge backend"),
        ({"backend": "offline", "concurrency": 0}, "concurrency must be >= 1"),
        ({"backend": "openai"}, "needs a model"),
        ({"backend": "offline", "max_retries": -1}, "max_retries"),
        ({"backend": "offline", "timeout_s": 0}, "timeout_s"),
        ({"backend": "hf", "model": "x", "temperature": 0.7}, "greedily"),
        ({"backend": "anthropic", "model": "x", "temperature": 0.7}, "no temperature"),
        ({"backend": "openai", "model": "x", "base_url": "localhost:1"}, "base_url"),
        ({"backend": "offline", "max_failed_share": 1.5}, "max_failed_share"),
        ({"backend": "offline", "max_failed_share": -0.1}, "max_failed_share"),
    ],
)
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        JudgeConfig(**kw)


def test_request_validation():
    with pytest.raises(ValueError, match="top_logprobs"):
        JudgeRequest("s", "u", top_logprobs=21)
    with pytest.raises(ValueError, match="max_tokens"):
        JudgeRequest("s", "u", max_tokens=0)


def test_require_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        require_api_key(JudgeConfig(backend="openai", model="m"))
    with pytest.raises(ValueError, match="MY_JUDGE_KEY"):
        require_api_key(JudgeConfig(backend="anthropic", model="m", api_key_env="MY_JUDGE_KEY"))
    require_api_key(JudgeConfig(backend="anthropic", model="m"))  # set by the fixture
    require_api_key(JudgeConfig(backend="offline"))
    require_api_key(JudgeConfig(backend="hf", model="some/path"))


def test_missing_key_raises_at_run_not_per_row(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeAPIServer() as server:
        judge = Judge(openai_cfg(server), tmp_path / "c.sqlite")
        with pytest.raises(ValueError, match="OPENAI_API_KEY"):
            judge.run(reqs(2))
        assert server.n_requests == 0


def test_offline_needs_callable():
    with pytest.raises(ValueError, match="needs a callable"):
        Judge(JudgeConfig(backend="offline"), None)


# -- offline backend, cache, dedup ------------------------------------------------------


def offline_len(req: JudgeRequest) -> str:
    return str(len(req.user) % 10)


def test_offline_deterministic_and_cached(tmp_path):
    cfg = JudgeConfig(backend="offline", model="len-judge")
    batch = reqs(12) + reqs(3)  # three duplicates
    r1, s1 = Judge(cfg, tmp_path / "a.sqlite", offline=offline_len).run(batch)
    r2, _ = Judge(cfg, None, offline=offline_len).run(batch)
    assert [r.text for r in r1] == [r.text for r in r2] == [offline_len(r) for r in batch]
    assert s1.n_requests == 15 and s1.n_unique == 12 and s1.n_calls == 12 and s1.n_failed == 0
    r3, s3 = Judge(cfg, tmp_path / "a.sqlite", offline=offline_len).run(batch)
    assert r3 == r1
    assert s3.n_calls == 0 and s3.n_cache_hits == 15
    assert set(s3.as_dict()) == {
        "n_requests", "n_unique", "n_cache_hits", "n_calls", "n_failed", "failures",
        "first_error", "elapsed_s", "input_tokens", "output_tokens", "cost_usd", "n_low_mass",
    }  # fmt: skip


def test_cache_key_ignores_key_and_separates_models(monkeypatch):
    req = JudgeRequest("s", "u")
    a = JudgeConfig(backend="openai", model="m1")
    k1 = request_key(a, req)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    assert request_key(a, req) == k1
    assert request_key(JudgeConfig(backend="openai", model="m2"), req) != k1
    assert request_key(a, JudgeRequest("s", "u", top_logprobs=5)) != k1


def test_offline_bug_propagates_and_stops_early(tmp_path):
    calls = []

    def broken(req):
        calls.append(req)
        time.sleep(0.01)
        raise KeyError("bug")

    judge = Judge(JudgeConfig(backend="offline", concurrency=2), tmp_path / "c.sqlite", broken)
    with pytest.raises(KeyError):
        judge.run(reqs(200))
    assert len(calls) < 50  # pending calls were cancelled, not run before raising


# -- openai backend against the fake server ------------------------------------------------


def test_openai_ok_order_and_warm_cache(tmp_path):
    with FakeAPIServer(echo) as server:
        batch = reqs(20) + reqs(5)
        judge = Judge(openai_cfg(server), tmp_path / "c.sqlite")
        replies, stats = judge.run(batch)
        assert [r.text for r in replies] == [f"echo:{r.user}" for r in batch]
        assert server.n_requests == 20 and stats.n_calls == 20 and stats.n_failed == 0
        sent = server.requests[0]
        assert sent["model"] == "gpt-fake" and sent["max_tokens"] == 16
        assert sent["temperature"] == 0.0 and "top_logprobs" not in sent
        assert [m["role"] for m in sent["messages"]] == ["system", "user"]
        # a new Judge on the same cache file: zero server requests
        replies2, stats2 = Judge(openai_cfg(server), tmp_path / "c.sqlite").run(batch)
        assert replies2 == replies
        assert server.n_requests == 20 and stats2.n_calls == 0 and stats2.n_cache_hits == 25


def test_concurrency_is_parallel(tmp_path):
    with FakeAPIServer(echo, delay_s=0.2) as server:
        judge = Judge(openai_cfg(server, timeout_s=5.0, concurrency=16), None)
        judge.run([JudgeRequest("s", "warm-up")])  # SDK import and client setup
        t0 = time.perf_counter()
        replies, stats = judge.run(reqs(16))
        elapsed = time.perf_counter() - t0
        assert stats.n_failed == 0 and all(r.text for r in replies)
        assert elapsed < 1.6, elapsed  # serial would take 16 * 0.2 = 3.2 s


@pytest.mark.parametrize("first", ["500", "429"])
def test_retry_then_ok(tmp_path, first):
    with FakeAPIServer(echo, plan=[first, "ok"]) as server:
        replies, stats = Judge(openai_cfg(server), tmp_path / "c.sqlite").run(reqs(1))
        assert replies[0].text == "echo:item 0" and replies[0].error is None
        assert server.n_requests == 2 and stats.n_calls == 2 and stats.n_failed == 0


def test_persistent_500_not_cached_then_recovers(tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeAPIServer(echo, plan="500") as server:
        replies, stats = Judge(openai_cfg(server, max_retries=2), cache).run(reqs(2))
        assert [r.text for r in replies] == [None, None]
        assert all("500" in r.error for r in replies)
        assert stats.n_failed == 2 and stats.n_calls == 6 and server.n_requests == 6
        server.plan = None  # the server heals
        replies, stats = Judge(openai_cfg(server), cache).run(reqs(2))
        assert [r.text for r in replies] == ["echo:item 0", "echo:item 1"]
        assert stats.n_cache_hits == 0 and stats.n_calls == 2 and stats.n_failed == 0


def test_timeout_fails_after_retries(tmp_path):
    with FakeAPIServer(echo, plan="timeout", timeout_sleep_s=1.5) as server:
        cfg = openai_cfg(server, max_retries=1, timeout_s=0.3)
        replies, stats = Judge(cfg, tmp_path / "c.sqlite").run(reqs(1))
        assert replies[0].text is None and "Timeout" in replies[0].error
        assert stats.n_failed == 1 and stats.n_calls == 2 and server.n_requests == 2


@pytest.mark.parametrize("behaviour", ["malformed", "nochoices"])
def test_malformed_fails_cleanly(tmp_path, behaviour):
    with FakeAPIServer(echo, plan=behaviour) as server:
        replies, stats = Judge(openai_cfg(server), tmp_path / "c.sqlite").run(reqs(2))
        assert [r.text for r in replies] == [None, None]
        assert all(r.error for r in replies) and stats.n_failed == 2
        # not cached: the next run calls the server again
        server.plan = None
        replies, stats = Judge(openai_cfg(server), tmp_path / "c.sqlite").run(reqs(2))
        assert stats.n_failed == 0 and stats.n_calls == 2


def test_top_logprobs_and_digit_ev(tmp_path):
    alts = {"7": math.log(0.5), " 3": math.log(0.25), "3": math.log(0.125), "x": math.log(0.125)}
    with FakeAPIServer(lambda r: "7", top_logprobs=lambda r: alts) as server:
        replies, _ = Judge(openai_cfg(server), tmp_path / "c.sqlite").run(
            [JudgeRequest("s", "u", max_tokens=1, top_logprobs=5)]
        )
        sent = server.requests[0]
        assert sent["logprobs"] is True and sent["top_logprobs"] == 5
    top = replies[0].top_logprobs
    assert replies[0].text == "7"
    assert top == pytest.approx(alts)
    # digits: 7 with p=.5, 3 with p=.25+.125=.375 -> EV = (7*.5 + 3*.375)/.875 on 0..9
    expected = (7 * 0.5 + 3 * 0.375) / 0.875 / 9 * 100
    assert digit_expected_value(top) == pytest.approx(expected)
    # survives the cache round trip
    replies2, stats2 = Judge(openai_cfg(server), tmp_path / "c.sqlite").run(
        [JudgeRequest("s", "u", max_tokens=1, top_logprobs=5)]
    )
    assert stats2.n_calls == 0 and replies2[0].top_logprobs == pytest.approx(alts)


def test_digit_expected_value_edges():
    assert digit_expected_value({"0": 0.0}) == 0.0
    assert digit_expected_value({"9": 0.0}) == 100.0
    uniform = {str(d): math.log(0.1) for d in range(10)}
    assert digit_expected_value(uniform) == pytest.approx(50.0)
    assert math.isnan(digit_expected_value(None))
    low = {"5": math.log(0.2), "no": math.log(0.8)}
    assert math.isnan(digit_expected_value(low))
    assert digit_expected_value(low, min_mass=0.1) == pytest.approx(5 / 9 * 100)
    assert math.isnan(digit_expected_value({"10": 0.0, "a": -1.0}))


def test_ledger_counts_tokens_and_cost_of_the_calls_made(tmp_path, monkeypatch):
    """The fake server bills one token per word: "Rate it." + "item i" = 4 input tokens, the
    echo "echo:item i" = 2 output tokens. Cache hits cost nothing; each run is a ledger row."""
    from interpflow.ledger import judge_ledger

    monkeypatch.setenv("INTERPFLOW_JOB", "logs/deception/x/labels.log")
    cache = tmp_path / "c.sqlite"
    with FakeAPIServer(echo) as server:
        cfg = openai_cfg(server, name="gpt", price_input_per_mtok=2.0, price_output_per_mtok=8.0)
        _, cold = Judge(cfg, cache).run(reqs(4))
        assert (cold.input_tokens, cold.output_tokens) == (16, 8)
        assert cold.cost_usd == pytest.approx((16 * 2.0 + 8 * 8.0) / 1e6)
        _, warm = Judge(cfg, cache).run(reqs(4) + reqs(6))  # items 0-3 twice (cached), 4-5 new
        assert (warm.n_cache_hits, warm.input_tokens, warm.output_tokens) == (8, 8, 4)
        unpriced = openai_cfg(server, name="free")
        _, st = Judge(unpriced, cache).run(reqs(1))
        assert st.cost_usd is None  # no price configured: no cost, not zero
    led = judge_ledger(cache).to_dicts()
    assert [r["judge"] for r in led] == ["free", "gpt"]
    free, gpt = led
    assert gpt == {
        "job": "logs/deception/x/labels.log",
        "judge": "gpt",
        "backend": "openai",
        "model": "gpt-fake",
        "runs": 2,
        "requests": 14,
        "cache_hits": 8,
        "calls": 6,
        "failed": 0,
        "low_mass": None,  # no scoring rule given: not counted, not zero
        "input_tokens": 24,
        "output_tokens": 12,
        "cost_usd": pytest.approx((24 * 2.0 + 12 * 8.0) / 1e6),
    }
    assert free["cost_usd"] is None and free["requests"] == 1
    assert SECRET.encode() not in cache.read_bytes()


def test_low_mass_nans_are_counted_per_run_and_in_the_ledger(tmp_path, monkeypatch):
    """Items 0-2: the digits hold 0.2 of the first token's probability (under min_mass 0.25:
    the score is NaN); items 3-5: 0.25 (at the threshold: scored); item 6: 0.9. The scoring
    rule given to run() flags exactly the three, the ledger sums them over runs, and a run
    with no rule (a stage that scores no number tokens) leaves the count null."""
    from interpflow.ledger import judge_ledger
    from interpflow.stats import digit_expected_value, low_mass

    monkeypatch.setenv("INTERPFLOW_JOB", "logs/inoculation/x/scores.log")
    digits = {0: 0.2, 1: 0.2, 2: 0.2, 3: 0.25, 4: 0.25, 5: 0.25, 6: 0.9}

    def alternatives(req):  # the digit mass split over "3" and " 7", the rest on a word
        mass = digits[int(req["messages"][-1]["content"].split()[-1])]
        return {"3": math.log(mass / 2), " 7": math.log(mass / 2), "Sorry": math.log(1 - mass)}

    def rule(reply):
        return low_mass(reply.top_logprobs, 0.25, top=9)

    cache = tmp_path / "c.sqlite"
    with FakeAPIServer(lambda r: "3", top_logprobs=alternatives) as server:
        cfg = openai_cfg(server, name="gpt")
        replies, st = Judge(cfg, cache).run(reqs(7, top_logprobs=5), low_mass=rule)
        scores = [digit_expected_value(r.top_logprobs, 0.25) for r in replies]
        assert [math.isnan(s) for s in scores] == [True] * 3 + [False] * 4
        assert scores[3] == pytest.approx((3 + 7) / 2 / 9 * 100)  # renormalised over the digits
        assert st.n_low_mass == 3
        _, warm = Judge(cfg, cache).run(reqs(2, top_logprobs=5), low_mass=rule)  # cached: counted
        assert (warm.n_cache_hits, warm.n_low_mass) == (2, 2)
        _, plain = Judge(openai_cfg(server, name="plain"), cache).run(reqs(2, top_logprobs=5))
        assert plain.n_low_mass is None
    led = {r["judge"]: r for r in judge_ledger(cache).to_dicts()}
    assert led["gpt"]["runs"] == 2 and led["gpt"]["low_mass"] == 5
    assert led["plain"]["low_mass"] is None


def test_a_ledger_from_before_the_low_mass_column_still_reads_and_grows(tmp_path, monkeypatch):
    from interpflow.ledger import judge_ledger

    cache = tmp_path / "old.sqlite"
    conn = sqlite3.connect(cache)
    conn.execute(
        "CREATE TABLE ledger (created REAL, job TEXT, judge TEXT, backend TEXT, model TEXT,"
        " n_requests INTEGER, n_cache_hits INTEGER, n_calls INTEGER, n_failed INTEGER,"
        " input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL, elapsed_s REAL)"
    )
    conn.execute("INSERT INTO ledger VALUES (0,'j','old','offline','',4,0,4,0,0,0,NULL,0.1)")
    conn.commit()
    conn.close()
    assert judge_ledger(cache)["low_mass"].to_list() == [None]
    cfg = JudgeConfig(backend="offline", name="new")
    with Judge(cfg, cache, offline=lambda req: "x") as judge:
        judge.run(reqs(3), low_mass=lambda reply: reply.text == "x")
    led = {r["judge"]: r for r in judge_ledger(cache).to_dicts()}
    assert (led["old"]["low_mass"], led["new"]["low_mass"]) == (None, 3)


def test_anthropic_backend(tmp_path):
    with FakeAPIServer(echo, plan=["429", "ok"]) as server:
        cfg = JudgeConfig(
            backend="anthropic",
            model="claude-fake",
            base_url=server.root_url,  # the Anthropic SDK appends /v1/messages itself
            max_retries=2,
            timeout_s=0.5,
        )
        replies, stats = Judge(cfg, tmp_path / "c.sqlite").run(
            [JudgeRequest("Be terse.", "hello", max_tokens=8, top_logprobs=3)]
        )
        assert replies[0].text == "echo:hello" and replies[0].top_logprobs is None
        assert stats.n_calls == 2 and server.n_requests == 2
        sent = server.requests[-1]
        assert sent["system"] == "Be terse." and sent["max_tokens"] == 8
        assert sent["messages"] == [{"role": "user", "content": "hello"}]


def test_secret_never_in_cache_or_errors(tmp_path, caplog):
    cache = tmp_path / "c.sqlite"
    caplog.set_level("DEBUG")
    with FakeAPIServer(echo, plan=["ok", "ok", "500", "500", "500", "malformed"]) as server:
        cfg = openai_cfg(server, max_retries=1, concurrency=1)
        replies, stats = Judge(cfg, cache).run(reqs(2) + reqs(4)[2:] + [JudgeRequest("s", "z")])
    assert stats.n_failed >= 1
    for r in replies:
        assert SECRET not in (r.error or "")
    # the sqlite file and its WAL/SHM companions
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("c.sqlite"))
    assert b"echo:item 0" in blob  # the cache does hold the successful replies
    assert SECRET.encode() not in blob
    assert b"SECRET123" not in blob
    assert "SECRET123" not in caplog.text


def test_error_text_redacts_key(tmp_path):
    with FakeAPIServer() as server:
        judge = Judge(openai_cfg(server), None)
        judge.run(reqs(1))  # builds the backend
        assert judge._error_text(RuntimeError(f"bad key {SECRET}")) == (
            "RuntimeError: bad key <redacted>"
        )


# -- too many failed calls stop the stage ---------------------------------------------------


def api_cfg(backend: str, server: FakeAPIServer, **kw) -> JudgeConfig:
    """A judge named "grader" on the fake server through the official SDK of ``backend``."""
    url = server.url if backend == "openai" else server.root_url  # Anthropic appends /v1
    kw.setdefault("max_retries", 2)  # 401/404 are not retried: one request per call
    return JudgeConfig(
        backend=backend, model=f"{backend}-nope", base_url=url, timeout_s=5.0, name="grader", **kw
    )


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "behaviour, status, hint",
    [("401", "HTTP 401 Unauthorized", "API key in"), ("404", "HTTP 404 Not Found", "model name")],
)
def test_all_calls_rejected_stop_with_one_clear_error(tmp_path, backend, behaviour, status, hint):
    with FakeAPIServer(echo, plan=behaviour) as server:
        cfg = api_cfg(backend, server)
        replies, stats = Judge(cfg, tmp_path / "c.sqlite").run(reqs(5))
        assert server.n_requests == 5 and stats.n_calls == 5  # the SDKs do not retry these
    assert stats.n_failed == 5 and stats.failures == {status: 5}
    assert all(r.reason == status and SECRET not in r.error for r in replies)
    if backend == "openai" and behaviour == "401":  # the body echoed the key: redacted
        assert "Incorrect API key provided: <redacted>" in stats.first_error
    with pytest.raises(JudgeFailureError) as err:
        check_failures(stats, cfg, tmp_path / "c.sqlite")
    msg = str(err.value)
    assert msg.startswith(f"judge 'grader' ({backend} model '{backend}-nope'): 5 of 5 calls failed")
    assert f"({status}: 5)" in msg and hint in msg and "max_failed_share=0.2" in msg
    assert str(tmp_path / "c.sqlite") in msg and SECRET not in msg
    assert isinstance(err.value, RuntimeError) and err.value.stats is stats


def test_failed_share_threshold(tmp_path):
    def plan(i, body):  # items 0 and 1 of ten fail
        return "401" if body["messages"][-1]["content"] in ("item 0", "item 1") else "ok"

    with FakeAPIServer(echo, plan=plan) as server:
        cfg = api_cfg("openai", server)
        replies, stats = Judge(cfg, None).run(reqs(10))
    assert [r.text is None for r in replies] == [True, True] + [False] * 8
    assert stats.n_failed == 2 and stats.failures == {"HTTP 401 Unauthorized": 2}
    check_failures(stats, cfg)  # 2 of 10 is the default share 0.2: not more, passes
    for share in (0.19, 0.0):
        with pytest.raises(JudgeFailureError, match="2 of 10 calls failed"):
            check_failures(stats, api_cfg("openai", server, max_failed_share=share))
    check_failures(stats, JudgeConfig(backend="offline"))  # no name: still fine
    stats.n_failed = 3
    with pytest.raises(JudgeFailureError, match=r"^judge \(openai model"):
        check_failures(stats, JudgeConfig(backend="openai", model="openai-nope"))


def test_successes_cached_before_the_error_rerun_calls_only_failed(tmp_path):
    cache = tmp_path / "c.sqlite"
    bad = {"item 1", "item 3", "item 4"}

    def plan(i, body):
        return "401" if body["messages"][-1]["content"] in bad else "ok"

    with FakeAPIServer(echo, plan=plan) as server:
        cfg = api_cfg("openai", server)
        with Judge(cfg, cache) as judge:
            _, stats = judge.run(reqs(6))
        with pytest.raises(JudgeFailureError, match="3 of 6 calls failed"):
            check_failures(stats, cfg, cache)
        server.plan = None  # the key is fixed
        server.reset()
        with Judge(cfg, cache) as judge:
            replies, stats = judge.run(reqs(6))
        check_failures(stats, cfg, cache)
        assert sorted(r["messages"][-1]["content"] for r in server.requests) == sorted(bad)
    assert stats.n_cache_hits == 3 and stats.n_calls == 3 and stats.n_failed == 0
    assert [r.text for r in replies] == [f"echo:item {i}" for i in range(6)]


def test_failure_reason():
    class StatusError(Exception):
        status_code = 599

    assert failure_reason(StatusError()) == "HTTP 599"
    assert failure_reason(TimeoutError("slow")) == "TimeoutError"


# -- hf backend on a tiny random model ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    # Byte-level BPE with no merges: one token per byte, so the Qwen2Tokenizer that
    # AutoTokenizer rebuilds for model_type=qwen2 tokenizes exactly like this one.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk.add_special_tokens(specials)
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        chat_template=template,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    n_vocab = tk.get_vocab_size()
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=n_vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = Qwen2ForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny-judge")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_hf_backend(tiny_hf_model, tmp_path):
    cfg = JudgeConfig(backend="hf", model=str(tiny_hf_model))
    batch = [
        JudgeRequest("rate it", "yes 7", max_tokens=4, top_logprobs=5),
        JudgeRequest("rate it", "no", max_tokens=3),
    ]
    judge = Judge(cfg, tmp_path / "c.sqlite")
    replies, stats = judge.run(batch)
    assert stats.n_failed == 0 and stats.n_calls == 2
    assert all(isinstance(r.text, str) for r in replies)
    top = replies[0].top_logprobs
    assert top is not None and 1 <= len(top) <= 5
    assert all(v <= 0.0 for v in top.values())
    assert sum(math.exp(v) for v in top.values()) <= 1.0 + 1e-5
    assert replies[1].top_logprobs is None
    # greedy: a fresh run without cache reproduces the text; the warm cache makes no call
    again, _ = Judge(cfg, None).run(batch)
    assert [r.text for r in again] == [r.text for r in replies]
    _, warm = Judge(cfg, tmp_path / "c.sqlite").run(batch)
    assert warm.n_calls == 0


def test_fakeapi_headers_and_stats():
    import json
    import urllib.error
    import urllib.request

    with FakeAPIServer(plan=["429"]) as server:
        body = json.dumps({"model": "m", "messages": []}).encode()
        post = urllib.request.Request(f"{server.url}/chat/completions", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(post, timeout=5)
        assert err.value.code == 429 and err.value.headers["retry-after"] == "0"
        with urllib.request.urlopen(post, timeout=5) as resp:
            assert json.load(resp)["choices"][0]["message"]["content"] == "5"
        with urllib.request.urlopen(f"{server.url}/_stats", timeout=5) as resp:
            assert json.load(resp) == {"n_requests": 2}
        assert server.behaviours == ["429", "ok"]


def test_fakeapi_rejects_unknown_behaviour_up_front():
    for plan in ("bogus", ["ok", "bogus"]):
        with pytest.raises(ValueError, match="unknown fake-API behaviour 'bogus'"):
            FakeAPIServer(plan=plan)
    with FakeAPIServer() as server:
        with pytest.raises(ValueError, match="'nope'"):
            server.plan = "nope"
        assert server.plan is None


def test_fakeapi_handler_errors_raise_on_close(tmp_path):
    # A callable plan's unknown name: the client sees a failed call, the test an error.
    server = FakeAPIServer(echo, plan=lambda i, body: "bogus")
    _, stats = Judge(openai_cfg(server, max_retries=0), None).run(reqs(1))
    assert stats.n_failed == 1 and len(server.errors) == 1
    with pytest.raises(ValueError, match="unknown fake-API behaviour 'bogus'"):
        server.close()

    def broken(request_json):
        raise KeyError("responder bug")

    server = FakeAPIServer(broken)
    _, stats = Judge(openai_cfg(server, max_retries=0), None).run(reqs(2))
    assert stats.n_failed == 2
    with pytest.raises(KeyError, match="responder bug"):
        server.close()
    # a client that timed out and closed the socket under a sleeping handler is no error
    with FakeAPIServer(echo, plan="timeout", timeout_sleep_s=0.6) as server:
        Judge(openai_cfg(server, max_retries=0, timeout_s=0.2), None).run(reqs(1))
        time.sleep(0.8)  # the handler wakes up and writes to the closed socket
    assert server.errors == []


# -- a corrupt or locked cache file ---------------------------------------------------------


@pytest.mark.parametrize(
    "damage, reason",
    [("garbage", "file is not a database"), ("pages", "database disk image is malformed")],
)
def test_corrupt_cache_is_reported_and_left_alone(tmp_path, damage, reason):
    cache = tmp_path / "judges.sqlite"
    cfg = JudgeConfig(backend="offline")
    if damage == "garbage":
        cache.write_bytes(b"not a database at all " * 200)
    else:  # a real cache whose header is intact and some pages are overwritten
        with Judge(cfg, cache, offline=offline_len) as judge:
            judge.run(reqs(300))
        data = bytearray(cache.read_bytes())
        data[8192:20480] = b"\x07" * 12288
        cache.write_bytes(bytes(data))
    damaged = cache.read_bytes()
    with pytest.raises(CacheError) as err, Judge(cfg, cache, offline=offline_len) as judge:
        judge.run(reqs(300))
    msg = str(err.value)
    print(msg)
    assert msg.startswith(f"{cache}: judge cache is corrupt ({reason}); left as it is")
    assert "paid API results" in msg and "move it aside" in msg
    assert cache.read_bytes() == damaged  # not deleted, moved or rewritten


def test_locked_cache_waits_then_names_the_file(tmp_path):
    path = tmp_path / "judges.sqlite"
    cache = _Cache(path, timeout_s=0.5)
    cache.put("a", JudgeReply(text="cached"))
    other = sqlite3.connect(path, isolation_level=None)  # another job, holding the write lock
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert cache.get_many(["a"])["a"].text == "cached"  # WAL: reads go on meanwhile
        t0 = time.perf_counter()
        with pytest.raises(CacheError) as err:
            cache.put("b", JudgeReply(text="new"))
        waited = time.perf_counter() - t0
    finally:
        other.execute("ROLLBACK")
        other.close()
        cache.close()
    print(err.value)
    assert str(err.value) == (
        f"{path}: judge cache is locked by another process (waited 0.5 s); "
        "let that job finish or stop it, then rerun"
    )
    assert 0.45 < waited < 10  # the busy timeout, not a hang
    with Judge(JudgeConfig(backend="offline"), path, offline=offline_len) as judge:
        assert judge._cache.get_many(["a"])["a"].text == "cached"  # nothing was lost


def test_jobs_opening_a_new_cache_together_do_not_fail(tmp_path):
    """Two label jobs of one preset open a fresh judge cache at the same moment; switching it to
    WAL made one of them fail at once with "database is locked" (10 of 48 openers in 12 rounds
    of 4 before the retry); now every opener waits its turn."""
    code = (
        "import sys, time\n"
        "from interpflow.judges import _Cache\n"
        "t = float(sys.argv[2])\n"
        "while time.time() < t: pass\n"
        "_Cache(sys.argv[1], timeout_s=10).close()\n"
    )
    for round_ in range(6):
        start = str(time.time() + 1.0)
        path = str(tmp_path / f"c{round_}.sqlite")
        procs = [
            subprocess.Popen([sys.executable, "-c", code, path, start], stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()


def test_percent_scale_refuses_an_hf_judge_whose_tokenizer_splits_numbers(tmp_path):
    """The stub tokenizer (Qwen2's pre-tokenizer) writes 10..100 as several tokens, so an
    expected value over the first token's "0".."100" would read "85" as "8": refused, naming
    the key and the fix. A tokenizer with one token per number, the digit scale, an API judge
    pass; a directory not there yet (a rule builds it) is left to the job."""
    from number_tokenizers import digit_splitting, whole_numbers

    from interpflow.config import ConfigError
    from interpflow.judges import check_number_tokens, split_numbers, tokenizer_encoder

    split, whole = digit_splitting(tmp_path / "stub"), whole_numbers(tmp_path / "words")
    encode = tokenizer_encoder(model=str(split), load=False)
    assert split_numbers(encode=encode) == list(range(10, 101))
    assert split_numbers(encode=tokenizer_encoder(model=str(whole), load=False)) == []
    key = "inoculation.x.judges.em_scale"
    cfg = JudgeConfig(backend="hf", model=str(split), name="local")
    with pytest.raises(
        ConfigError, match=rf"config key {key}: .*'local'.*91 of them.*set {key}: digit"
    ):
        check_number_tokens(cfg=cfg, scale="percent", key=key, load=False)
    assert check_number_tokens(cfg=cfg, scale="digit", key=key, load=False)
    ok = JudgeConfig(backend="hf", model=str(whole))
    assert check_number_tokens(cfg=ok, scale="percent", key=key, load=False)
    api = JudgeConfig(backend="openai", model="gpt-4.1-mini")
    assert check_number_tokens(cfg=api, scale="percent", key=key, load=False)
    later = JudgeConfig(backend="hf", model=str(tmp_path / "built-later"))
    assert check_number_tokens(cfg=later, scale="percent", key=key, load=False) is False
