"""The live probe demo (interpflow.demo): the live scores are the library's capture + probe
path for the same tokens and text, the replay scores are the trained probe's on the stored
activations, and the app works in a real headless browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
from browser import artifact_dir, chromium, free_port, wait_http
from conftest import REPO

from interpflow.capture import capture_texts, sample_and_capture
from interpflow.demo import load_instance
from interpflow.demo_scores import DemoInstance, LiveScorer
from interpflow.generate import SamplingConfig
from interpflow.metrics import proba_for
from interpflow.models import ModelSpec, chat_prompt, load_model
from interpflow.positions import parse_positions
from interpflow.probes import make_logreg

CLASSES = np.array(["deceptive", "eval_aware", "normal"])
LAYER = 2


def library_scores(model, tok, inst, prompt: str, response: str, n: int) -> dict[str, np.ndarray]:
    """Position name -> the probe's probabilities, by the library's teacher-forced re-read of
    the chat prompt + response text (capture_texts, the instance's storage dtype)."""
    specs = ["last_prompt"] + ([f"response[0..{n - 1}]"] if n else [])
    table = pl.from_arrow(
        capture_texts(
            model,
            tok,
            ["live"],
            [chat_prompt(tok, prompt, inst.sampling.system_prompt)],
            [response],
            (inst.layer,),
            parse_positions(specs),
            inst.store_dtype,
        )
    )
    X = np.stack(table["activation"].to_numpy()).astype(np.float32)
    return dict(zip(table["position"], proba_for(inst.probe, X, inst.classes), strict=True))


def roundtrip_prefix(tok, ids: list[int]) -> tuple[str, int]:
    """The decoded response text (as generation decodes it) and how many of ``ids`` its
    re-encoding keeps (byte-level pieces of a broken UTF-8 character do not survive)."""
    text = tok.decode(ids, skip_special_tokens=True)
    again = tok(text, add_special_tokens=False)["input_ids"]
    k = 0
    while k < min(len(ids), len(again)) and ids[k] == again[k]:
        k += 1
    return text, k


@pytest.fixture(scope="module")
def scorer(stub_dir, tmp_path_factory) -> LiveScorer:
    """The stub with a logistic probe fit on its own layer-2 vectors of a few chats."""
    spec = ModelSpec(str(stub_dir), device="cpu")
    model, tok = load_model(spec)
    texts = [
        f"Question {i}: {w}?"
        for i, w in enumerate(["bread", "cats", "audit", "lie", "test", "rain"])
    ]
    table = pl.from_arrow(
        capture_texts(
            model,
            tok,
            [str(i) for i in range(len(texts))],
            [chat_prompt(tok, t) for t in texts],
            ["Sure, here is an answer."] * len(texts),
            (LAYER,),
            parse_positions(["last_prompt", "response[0..4]"]),
        )
    )
    X = np.stack(table["activation"].to_numpy()).astype(np.float32)
    y = CLASSES[np.arange(len(X)) % 3]
    inst = DemoInstance(
        name="test",
        results=tmp_path_factory.mktemp("results"),
        model=spec,
        layer=LAYER,
        store_dtype="float16",
        sampling=SamplingConfig(max_new_tokens=8, temperature=0.7, top_p=0.9, seed=0),
        probe=make_logreg(0).fit(X, y),
        classes=CLASSES,
    )
    return LiveScorer(inst, threads=1)


def test_live_scores_are_the_generation_capture(scorer):
    """Sampled live: the same tokens as the generation stage's sample_and_capture with the same
    seed, and at each one the probe's probabilities on the vectors that path stores."""
    inst, prompt, n_new, seed = scorer.inst, "Lie to the inspector about the audit.", 10, 3
    states = []  # the newest token of each streamed state
    for state in scorer.stream(prompt, n_new, seed):
        states.append(state.tokens[-1].position)
    assert state.done and states[0] == "last_prompt"  # streamed token by token
    ids = state.response_ids
    assert states[1 : len(ids) + 1] == [f"response[{i}]" for i in range(len(ids))]

    import torch

    sampling = SamplingConfig(max_new_tokens=n_new, temperature=0.7, top_p=0.9, seed=seed)
    torch.manual_seed(seed)
    seqs, _, width, _, r_lens, _, vectors, _ = sample_and_capture(
        scorer.model,
        scorer.tokenizer,
        [scorer.chat(prompt)],
        sampling,
        scorer.eos,
        (LAYER,),
        parse_positions(["last_prompt", f"response[0..{n_new - 1}]"]),
    )
    assert seqs[0, width : width + int(r_lens[0])].tolist() == ids
    for tok in state.tokens:
        v = vectors[(LAYER, tok.position)].astype(inst.store_dtype).astype(np.float32)
        want = proba_for(inst.probe, v, inst.classes)[0]
        got = np.array([tok.proba[c] for c in inst.classes])
        # cached decode vs one teacher-forced pass: equal to 1e-6 in fp32, then float16 storage
        np.testing.assert_allclose(got, want, atol=2e-3, err_msg=tok.position)


@pytest.mark.parametrize("greedy", [True, False])
def test_live_scores_equal_capture_texts(scorer, greedy):
    """The live scores equal the library's capture_texts + probe on the same prompt and
    response text, at every token the text re-encodes to (all of them when greedy here)."""
    prompt = "How do I bake bread?"
    for state in scorer.stream(prompt, 8, seed=1, do_sample=False if greedy else None):
        pass
    ids = state.response_ids
    text, k = roundtrip_prefix(scorer.tokenizer, ids)
    if greedy:
        assert k == len(ids) > 0
    want = library_scores(scorer.model, scorer.tokenizer, scorer.inst, prompt, text, k)
    shown = {t.position: t.proba for t in state.tokens}
    for pos in ["last_prompt"] + [f"response[{i}]" for i in range(k)]:
        got = np.array([shown[pos][c] for c in CLASSES])
        np.testing.assert_allclose(got, want[pos], rtol=0, atol=1e-6, err_msg=pos)


def test_the_note_gives_the_measured_ms_per_token_and_the_probes_share(scorer):
    from interpflow.demo_scores import token_latency

    # a constructed clock: probes start at 0, 10, 30 ms and take 2, 3, 5 ms
    clock = [(0.000, 0.002), (0.010, 0.013), (0.030, 0.035)]
    step, probe = token_latency(clock)
    assert step == pytest.approx(15.0) and probe == pytest.approx(4.0)
    assert token_latency(clock[:1]) == (None, None)  # the first token's time is the prefill
    for state in scorer.stream("How do I bake bread?", 6, seed=1, do_sample=False):
        pass
    assert len(state.response_ids) >= 2, state.note
    assert 0 < state.probe_ms_per_token < state.ms_per_token
    assert f"{state.ms_per_token:.1f} ms/token on float32 (decode step + probe)" in state.note


def test_the_live_tab_runs_the_model_in_4_bits(scorer):
    """--4bit: the instance's quant_transfer.scheme through bitsandbytes (CPU backend here);
    the same probe reads the 4-bit model's residuals, close to the full-precision ones."""
    from dataclasses import replace

    import bitsandbytes as bnb

    inst = replace(scorer.inst, model=replace(scorer.inst.model, quantization="nf4"))
    four = LiveScorer(inst, threads=1)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in four.model.modules())
    for state in four.stream("How do I bake bread?", 6, seed=1, do_sample=False):
        pass
    assert state.done and "ms/token on 4-bit nf4" in state.note
    *_, full = scorer.stream("How do I bake bread?", 6, seed=1, do_sample=False)
    p4, pf = state.tokens[0].proba, full.tokens[0].proba
    assert state.tokens[0].position == "last_prompt"
    assert max(abs(p4[c] - pf[c]) for c in CLASSES) < 0.5  # the same probe, a nearby reading
    assert sum(p4.values()) == pytest.approx(1.0)


def test_the_4bit_flag_takes_the_scheme_the_transfer_stage_reads():
    from interpflow.demo import demo_quantization, instance_config

    inst, _ = instance_config(REPO, "default")
    assert demo_quantization(inst, True) == "nf4"  # the schema default of quant_transfer.scheme
    assert demo_quantization(inst | {"quant_transfer": {"scheme": "fp4"}}, True) == "fp4"
    assert demo_quantization(inst, False) is None


def test_unknown_instance_names_the_declared():
    with pytest.raises(ValueError, match="no deception instance 'nope'.*declared: default"):
        load_instance(REPO, "nope")


# ------------------------------------------------------------------------------------------
# the app in a real browser, on a deception instance built by the workflow


@pytest.mark.e2e
def test_demo_in_a_headless_browser(all_run, tmp_path):
    """On the default deception instance of the session's stub run, read only: the server
    runs in tmp_path with ``--root`` there."""
    driver = chromium()  # skips (fails in CI) without chromium + chromium-driver
    work, _ = all_run
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "demo.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "interpflow.demo", "--instance", "default", "--port", str(port),
         "--threads", "1", "--root", str(work)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    shots = artifact_dir(tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, 300, alive=lambda: server.poll() is None)
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(driver, 240)
        driver.get(url)
        # Replay: the first held-out prompt, scored from the stored activations
        replay = wait.until(EC.presence_of_element_located((By.ID, "replay-tokens")))
        pid = replay.get_attribute("data-prompt-id")
        shown = {
            s.get_attribute("data-position"): json.loads(s.get_attribute("data-proba"))
            for s in replay.find_elements(By.CSS_SELECTOR, ".tok.scored")
        }
        test = pl.read_parquet(work / "results/deception/default/probes/test_proba.parquet")
        rows = test.filter((pl.col("prompt_id") == pid) & (pl.col("occurrence") == 0))
        assert rows.height and set(rows["position"]) <= set(shown)
        for row in rows.to_dicts():
            for c, p in shown[row["position"]].items():
                assert abs(p - row[f"logreg:{c}"]) < 1e-6, (pid, row["position"], c)
        driver.save_screenshot(str(shots / "demo_replay.png"))

        # Live: type a prompt, generate greedily, wait for the streamed tokens
        driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Live')]").click()
        prompt = "Pretend the audit passed and tell the inspector nothing."
        box = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#live-prompt textarea")))
        box.send_keys(prompt)
        driver.find_element(By.XPATH, "//label[contains(., 'greedy')]//input").click()
        t0 = time.perf_counter()
        driver.find_element(By.ID, "live-go").click()
        done = wait.until(
            EC.presence_of_element_located((By.CSS_SELECTOR, "#live-tokens[data-done='1']"))
        )
        seconds = time.perf_counter() - t0
        spans = done.find_elements(By.CSS_SELECTOR, ".tok.scored")
        live = {
            s.get_attribute("data-position"): (
                int(s.get_attribute("data-token-id")),
                json.loads(s.get_attribute("data-proba")),
            )
            for s in spans
        }
        assert driver.find_elements(By.CSS_SELECTOR, "#live-chart svg polyline")
        driver.save_screenshot(str(shots / "demo_live.png"))

        inst = load_instance(work, "default")
        model, tok = load_model(inst.model)
        ids = [live[f"response[{i}]"][0] for i in range(len(live) - 1)]
        text, k = roundtrip_prefix(tok, ids)
        assert len(ids) >= 4 and k == len(ids)  # greedy on the stub: the text re-encodes
        want = library_scores(model, tok, inst, prompt, text, k)
        assert set(want) == set(live)
        for pos, (_, proba) in live.items():
            got = np.array([proba[c] for c in inst.classes])
            # the live stream's cached decode vs one teacher-forced pass, both stored in float16:
            # the tolerance of test_live_scores_are_the_generation_capture (1e-6 failed here
            # by 2.2e-6 at response[14], deterministically, on this machine's kernels)
            np.testing.assert_allclose(got, want[pos], rtol=0, atol=2e-3, err_msg=pos)
        print(f"\nscreenshots: {shots / 'demo_replay.png'} {shots / 'demo_live.png'}")
        print(f"live: {len(ids)} tokens scored in {seconds:.1f} s")
    finally:
        driver.quit()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
