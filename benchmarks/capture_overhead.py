"""Capture cost, measured side by side in one run (the machine is shared and noisy).

1. overhead: generation + capture / generation alone, same batches, interleaved repeats
   (goal <= 1.05x). Capture = one teacher-forced pass, all layers, 5 positions.
2. batching: one-prompt-at-a-time / batched wall time for generation + capture of the same
   prompts (goal >= 20x), and the same ratio for the capture pass alone.
3. with --real-size on a GPU: a random-init model of the Qwen2.5-1.5B shape in bf16 (nothing
   downloaded), decode tokens/s at batch 1 and 64 and its capture overhead.

Usage: python benchmarks/capture_overhead.py [--model DIR] [--prompts 64] [--new-tokens 96]
                                             [--repeats 3] [--real-size]
The last line holds the figures as name=value pairs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from interpflow import generate as G
from interpflow.models import ModelSpec, chat_prompt, eos_token_ids, load_model
from interpflow.positions import parse_positions
from interpflow.prompts import read_bank
from interpflow.stub import StubConfig, build_stub

REPO = Path(__file__).resolve().parents[1]
POSITIONS = parse_positions(["last_prompt", "response[0..3]"])


def prompts(n: int) -> list[str]:
    texts = []
    for bank in sorted((REPO / "resources/prompt_banks/deception").glob("*.txt")):
        texts += [t for _, t in read_bank(bank)]
    return texts[:n]


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench(model, tok, texts, new_tokens, batch, repeats, layers):
    """Median seconds over ``repeats`` interleaved runs of ``batch``-sized calls:

    ``gen`` generation alone; ``both`` generation with capture (hooks during generate, the
    pipeline's path); ``forced`` generation then a teacher-forced capture pass (the
    alternative design, for comparison). Greedy decoding: every run does the same work.
    """
    sampling = G.SamplingConfig(max_new_tokens=new_tokens, do_sample=False)
    eos = eos_token_ids(model, tok)
    chats = [chat_prompt(tok, t) for t in texts]
    batches = [chats[i : i + batch] for i in range(0, len(chats), batch)]

    def gen():
        for b in batches:
            G.sample_batch(model, tok, b, sampling, eos)

    def both():
        for b in batches:
            G.sample_and_capture(model, tok, b, sampling, eos, layers, POSITIONS)

    def forced():
        for b in batches:
            seqs, pm, w, p_lens, r_lens, _ = G.sample_batch(model, tok, b, sampling, eos)
            G.capture_batch(model, seqs, pm, w, p_lens, r_lens, layers, POSITIONS)

    times = {"gen": [], "both": [], "forced": []}
    for _ in range(repeats):
        for name, fn in (("gen", gen), ("both", both), ("forced", forced)):
            times[name].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="model dir (default: build the stub in a temp dir)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--real-size", action="store_true", help="also bench a 1.5B-shape bf16 model on CUDA"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or str(
            build_stub([REPO / "resources/stub/corpus.txt"], Path(tmp) / "stub", StubConfig())
        )
        model, tok = load_model(ModelSpec(path))
        layers = tuple(range(model.config.num_hidden_layers))
        texts = prompts(args.prompts)
        batched = bench(model, tok, texts, args.new_tokens, len(texts), args.repeats, layers)
        single = bench(model, tok, texts, args.new_tokens, 1, 1, layers)

    figures = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "capture_overhead": batched["both"] / batched["gen"],
        "teacher_forced_overhead": batched["forced"] / batched["gen"],
        "batched_speedup": single["both"] / batched["both"],
        "gen_s": batched["gen"],
        "gen_capture_s": batched["both"],
        "one_by_one_s": single["both"],
    }
    print(
        f"{len(texts)} prompts x {args.new_tokens} new tokens, layers {list(layers)}, 5 positions"
    )
    print(
        f"  batched: generation {batched['gen']:.2f}s, with capture {batched['both']:.2f}s, "
        f"with a teacher-forced pass {batched['forced']:.2f}s"
    )
    print(f"  one prompt at a time: generation with capture {single['both']:.2f}s")

    if args.real_size and torch.cuda.is_available():
        from transformers import AutoConfig, AutoModelForCausalLM

        cfg = AutoConfig.for_model(
            "qwen2",
            vocab_size=151936,
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
        )
        big = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).cuda().eval()
        big.generation_config.eos_token_id = None
        for bsz in (1, 64):
            ids = torch.randint(100, 150000, (bsz, 64), device="cuda")
            mask = torch.ones_like(ids)
            kw = {
                "max_new_tokens": 128,
                "do_sample": False,
                "pad_token_id": 0,
                "min_new_tokens": 128,
            }
            with torch.inference_mode():
                big.generate(
                    ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0
                )
                t = timed(
                    lambda ids=ids, mask=mask, kw=kw: big.generate(ids, attention_mask=mask, **kw)
                )
            figures[f"real_decode_tok_per_s_b{bsz}"] = bsz * 128 / t
            seqs = torch.cat([ids, torch.randint(100, 150000, (bsz, 128), device="cuda")], 1)
            p_lens, r_lens = (
                torch.full((bsz,), 64, device="cuda"),
                torch.full((bsz,), 128, device="cuda"),
            )
            args_ = (big, seqs, mask, 64, p_lens, r_lens, (20,), POSITIONS)
            tc = timed(lambda args_=args_: G.capture_batch(*args_))
            figures[f"real_teacher_forced_overhead_b{bsz}"] = (t + tc) / t
        print(f"  real-size (Qwen2.5-1.5B shape, bf16): {figures}")
    print(
        " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    )


if __name__ == "__main__":
    main()
