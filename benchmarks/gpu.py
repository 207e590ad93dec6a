"""GPU benchmark: bf16 decode with and without capture, HBM bandwidth share, one LoRA step.

A random-init model of the Qwen2.5-7B shape (``--shape 7b``: hidden 3584, 28 layers, 28
query / 4 KV heads, intermediate 18944, vocab 152064, untied embeddings; 7.6B parameters,
15.2 GB in bf16) is built on the GPU; nothing is downloaded. Prompts are token-exact: the
stub tokenizer (built offline, as in ``capture_overhead.py``) writes one token per digit,
so every prompt is ``--prompt-tokens`` tokens after the chat template, and the model's
generation config sets ``min_new_tokens`` so every response is ``--new-tokens`` tokens
(greedy). The model's ids beyond the stub's vocabulary decode to nothing, which is fine
here: only the tokens count.

Generation goes through the pipeline's own entry point, ``interpflow.generate.run_batch``
(``capture_overhead.Runner``): with capture layers through ``sample_and_capture``, whose
hooks keep the residual stream at the 7B preset's layers 8/12/16/20/24 and the default 5
positions (``last_prompt``, ``response[0..3]``). For each batch size of ``--batches``
(default 1 and 32), three configurations, interleaved over ``--repeats`` after one untimed
warm-up round:

* ``b<B> generation``          ``run_batch`` without capture, ``--new-tokens`` new tokens;
* ``b<B> generation+capture``  the same with capture;
* ``b<B> prefill``             ``run_batch`` without capture, 1 new token (prefill + fixed
  costs: tokenizing, the chat template, decoding), to take out of the decode rate.

Figures (medians of per-repeat values):

* ``b<B>_tok_per_s``, ``b<B>_capture_tok_per_s``: generated tokens / wall seconds, end to end;
* ``b<B>_decode_tok_per_s``: ``B x (new_tokens - 1)`` / (generation - prefill seconds);
* ``b<B>_capture_overhead``: generation+capture / generation seconds;
* ``batching_speedup``: tokens/s at the largest batch / at the smallest, without capture;
* ``hbm_share_b1``: the share of HBM bandwidth the batch-1 decode implies: weight bytes (every
  parameter's numel x its element size, 2 in bf16) x ``b1_decode_tok_per_s`` / the bandwidth.
  Each decode step reads every weight once (the input embedding table only a row per token,
  so this overstates the share by its ~7% of the bytes). The bandwidth: ``--hbm-gbps``, else
  by ``torch.cuda.get_device_name`` (H100 SXM 3350, H100 PCIe 2000, H100 NVL 3900, H200 4800,
  A100 80GB SXM 2039, A100 80GB PCIe 1935 GB/s); an unknown GPU needs the flag. ``n/a`` on CPU.
* ``lora_step_s``: one LoRA training step (forward, loss, backward, gradient clipping, AdamW
  step), ``interpflow.adapters.wrap_model`` with rank 16 on q/k/v/o of every layer, as in
  ``train_adapter`` (fp32 logits, cross-entropy, ``TrainConfig``'s clip norm and LR), on
  ``--lora-batch`` x ``--lora-seq`` random tokens (default 8 x 512), median of ``--repeats``
  after one warm-up step; ``lora_tok_per_s`` and, on CUDA, ``lora_peak_gib`` (peak allocated).

Goals (exit 1 when one is missed): capture overhead <= 1.10x at each batch size
(``--goal-overhead``); the largest batch's tokens/s >= 8x the smallest's
(``--goal-batching``; batch 32 vs batch 1 by default).

Time on one H100 at the defaults (5 repeats, prompts of 128 tokens, 128 new tokens), an
estimate: imports, the stub tokenizer and the 7.6B random init ~1 min; HF ``generate`` at
~25-40 ms a step (Python-bound at batch 1) makes a round of the six runs ~10-20 s, so the
warm-up + 5 rounds take 1-2 min; 6 LoRA steps of 4096 tokens ~0.5 s each. About 3 min in
all, 5 at worst; within 10. Memory: 15.2 GB of weights; the LoRA step (no gradient
checkpointing, fp32 logits of 8 x 512 x 152064, PEFT's fp32 adapters) peaks at 50-60 GB.

``--shape tiny`` (hidden 64, 6 layers, capture layers 1-5, fp32 on CPU, prompts of 32 tokens,
8 new tokens, LoRA 2 x 64) runs on a CPU in seconds: the test suite's smoke test.

Results: the table on stdout, JSON (``--out``, default ``benchmarks/results/gpu.json``),
and ``name=value`` pairs on the last line.

Usage: python benchmarks/gpu.py [--shape 7b|tiny] [--device cuda|cpu] [--batches 1 32]
           [--new-tokens 128] [--prompt-tokens 128] [--repeats 5] [--hbm-gbps GBPS]
           [--lora-batch 8] [--lora-seq 512] [--goal-overhead 1.10] [--goal-batching 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import polars as pl
import torch
from _bench import Goal, interleave, load_average, load_line, median, per_repeat, report
from capture_overhead import POSITIONS, REAL_LAYERS, Runner, random_model, stub_dir

from interpflow.adapters import AdapterConfig, TrainConfig, wrap_model
from interpflow.models import ModelSpec, chat_prompt, load_tokenizer
from interpflow.positions import parse_positions

QWEN25_7B = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
TINY = QWEN25_7B | {
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
SHAPES = {
    # shape: (config, capture layers, defaults for the sizes)
    "7b": (
        QWEN25_7B,
        REAL_LAYERS,
        {"new_tokens": 128, "prompt_tokens": 128, "repeats": 5, "lora_batch": 8, "lora_seq": 512},
    ),
    "tiny": (
        TINY,
        (1, 2, 3, 4, 5),
        {"new_tokens": 8, "prompt_tokens": 32, "repeats": 3, "lora_batch": 2, "lora_seq": 64},
    ),
}
#: HBM bandwidth in GB/s by a substring of ``torch.cuda.get_device_name`` (first match wins).
HBM_GBPS = (
    ("GH200", None),  # 96 GB HBM3 (4000) or 144 GB HBM3e (4900): give --hbm-gbps
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100 NVL", 3900.0),
    ("H100", 3350.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100 80GB PCIe", 1935.0),
    ("A100-SXM4-80GB", 2039.0),
)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def hbm_gbps(device_name: str) -> float | None:
    """The HBM bandwidth (GB/s) of a GPU by its name, None when unknown."""
    for key, gbps in HBM_GBPS:
        if key in device_name:
            return gbps
    return None


def digit_prompts(tok, n: int, prompt_tokens: int, seed: int = 0) -> pl.DataFrame:
    """``n`` ``run_batch`` rows whose chat prompts are exactly ``prompt_tokens`` tokens.

    The stub tokenizer writes one token per digit (Qwen2's pre-tokenizer splits digits), so
    the user turn is ``prompt_tokens`` minus the chat template's own tokens, in digits.
    """
    overhead = len(tok(chat_prompt(tok, ""), add_special_tokens=False)["input_ids"])
    k = prompt_tokens - overhead
    if k < 1:
        raise ValueError(f"--prompt-tokens must be > {overhead} (the chat template's tokens)")
    g = torch.Generator().manual_seed(seed)
    texts = ["".join(map(str, torch.randint(0, 10, (k,), generator=g).tolist())) for _ in range(n)]
    for t in texts:
        got = len(tok(chat_prompt(tok, t), add_special_tokens=False)["input_ids"])
        assert got == prompt_tokens, (got, prompt_tokens)
    return pl.DataFrame(
        {"prompt_id": [f"p{i}" for i in range(n)], "category": ["bench"] * n, "prompt": texts}
    )


class Fixed(Runner):
    """A ``Runner`` whose responses are exactly ``new_tokens`` long (EOS suppressed)."""

    def __init__(self, model, tok, frame, new_tokens: int, layers):
        super().__init__(model, tok, frame, frame.height, new_tokens, layers)
        self.new_tokens = new_tokens

    def __call__(self) -> float:
        self.model.generation_config.min_new_tokens = self.new_tokens
        seconds = super().__call__()
        assert self.tokens == self.frame.height * self.new_tokens, self.tokens
        return seconds


class LoraStep:
    """One LoRA optimizer step on random tokens, as ``train_adapter`` takes it; returns seconds."""

    def __init__(self, model, batch: int, seq: int, rank: int = 16, seed: int = 0):
        self.train = TrainConfig(batch_size=batch, grad_accum=1, max_seq_len=seq, seed=seed)
        adapter = AdapterConfig(family="lora", rank=rank, target_modules=LORA_TARGETS)
        model.config.use_cache = False
        self.model = wrap_model(model, adapter, seed)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable = sum(p.numel() for p in self.params)
        self.opt = torch.optim.AdamW(self.params, lr=self.train.lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(seed)
        vocab = model.config.vocab_size
        self.ids = torch.randint(0, vocab, (batch, seq), generator=g).to(model.device)
        self.mask = torch.ones_like(self.ids)
        self.tokens = batch * (seq - 1)  # tokens with a loss
        self.cuda = model.device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logits = self.model(input_ids=self.ids, attention_mask=self.mask).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), self.ids[:, 1:].reshape(-1)
        )
        del logits
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.train.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        assert torch.isfinite(loss).item()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--new-tokens", type=int, help="default 128 (7b), 8 (tiny)")
    ap.add_argument("--prompt-tokens", type=int, help="default 128 (7b), 32 (tiny)")
    ap.add_argument("--repeats", type=int, help="default 5 (7b), 3 (tiny)")
    ap.add_argument("--layers", type=int, nargs="+", help="capture layers (7b: 8 12 16 20 24)")
    ap.add_argument("--hbm-gbps", type=float, help="HBM bandwidth, GB/s (default: by GPU name)")
    ap.add_argument("--lora-batch", type=int, help="default 8 (7b), 2 (tiny)")
    ap.add_argument("--lora-seq", type=int, help="default 512 (7b), 64 (tiny)")
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    ap.add_argument("--goal-overhead", type=float, default=1.10, help="max capture/generation")
    ap.add_argument("--goal-batching", type=float, default=8.0, help="min big/small batch tok/s")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/gpu.json)")
    args = ap.parse_args(argv)
    shape, default_layers, sizes = SHAPES[args.shape]
    for k, v in sizes.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    layers = tuple(args.layers or default_layers)
    batches = sorted(set(args.batches))
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available")
    if args.shape == "7b" and not cuda:
        ap.error("--shape 7b needs CUDA (use --shape tiny on a CPU)")
    if min(*batches, args.new_tokens - 1, args.repeats, args.lora_batch, args.lora_seq - 1) < 1:
        ap.error(
            "batch sizes, --repeats and --lora-batch must be >= 1; --new-tokens, --lora-seq >= 2"
        )
    if not 0 <= min(layers) <= max(layers) < shape["num_hidden_layers"]:
        ap.error(f"--layers must lie in 0..{shape['num_hidden_layers'] - 1}")
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if cuda else None
    bandwidth = (args.hbm_gbps or hbm_gbps(gpu)) if cuda else None  # CPU: n/a
    if cuda and bandwidth is None:
        ap.error(f"unknown HBM bandwidth of {gpu!r}: give --hbm-gbps")
    torch.set_num_threads(args.threads)
    load_before = load_average()

    with tempfile.TemporaryDirectory() as tmp:
        tok = load_tokenizer(ModelSpec(str(stub_dir(tmp))))
    model = random_model(shape, args.device)
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    new = args.new_tokens
    configs = {}
    for b in batches:
        frame = digit_prompts(tok, b, args.prompt_tokens, seed=b)
        configs[f"b{b} generation"] = Fixed(model, tok, frame, new, ())
        configs[f"b{b} generation+capture"] = Fixed(model, tok, frame, new, layers)
        configs[f"b{b} prefill"] = Fixed(model, tok, frame, 1, ())
    times = interleave(configs, args.repeats)

    ratios: dict[str, list[float]] = {}
    figures: dict[str, object] = {"device": args.device, "params": params}
    tok_per_s: dict[int, list[float]] = {}
    for b in batches:
        gen, cap = times[f"b{b} generation"], times[f"b{b} generation+capture"]
        pre = times[f"b{b} prefill"]
        tok_per_s[b] = [b * new / t for t in gen]
        decode = [b * (new - 1) / (g - p) if g > p else float("inf") for g, p in zip(gen, pre)]
        ratios[f"b{b} overhead (capture / generation)"] = per_repeat(cap, gen)
        figures[f"b{b}_tok_per_s"] = median(tok_per_s[b])
        figures[f"b{b}_capture_tok_per_s"] = median([b * new / t for t in cap])
        figures[f"b{b}_decode_tok_per_s"] = median(decode)
        figures[f"b{b}_capture_overhead"] = median(ratios[f"b{b} overhead (capture / generation)"])
    lo, hi = batches[0], batches[-1]
    if hi > lo:
        ratios[f"batching (b{hi} / b{lo} tok/s)"] = per_repeat(tok_per_s[hi], tok_per_s[lo])
        figures["batching_speedup"] = median(ratios[f"batching (b{hi} / b{lo} tok/s)"])
    figures["weight_gb"] = weight_bytes / 1e9
    figures["hbm_gbps"] = bandwidth if bandwidth else "n/a"
    b1_decode = figures.get("b1_decode_tok_per_s")
    share = weight_bytes * b1_decode / (bandwidth * 1e9) if bandwidth and b1_decode else None
    figures["hbm_share_b1"] = share if share is not None else "n/a"

    # one LoRA training step at the same shape (the model is wrapped in place: last)
    lora = LoraStep(model, args.lora_batch, args.lora_seq, rank=args.lora_rank)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times |= interleave({"lora step": lora}, args.repeats)
    figures["lora_step_s"] = median(times["lora step"])
    figures["lora_tok_per_s"] = lora.tokens / figures["lora_step_s"]
    figures["lora_trainable"] = lora.trainable
    figures["lora_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else "n/a"

    goals = [
        Goal(
            f"b{b}_capture_overhead",
            f"batch {b}: capture overhead <= {args.goal_overhead:.2f}x generation alone "
            f"(median of per-repeat ratios)",
            figures[f"b{b}_capture_overhead"],
            "<=",
            args.goal_overhead,
        )
        for b in batches
    ]
    if hi > lo:
        goals.append(
            Goal(
                "batching_speedup",
                f"batch {hi} generates >= {args.goal_batching:.1f}x the tokens/s of batch {lo}",
                figures["batching_speedup"],
                ">=",
                args.goal_batching,
            )
        )
    load_after = load_average()
    n_pos = len(parse_positions(list(POSITIONS)))
    if cuda:
        where = f"{gpu} ({bandwidth:.0f} GB/s HBM)"
    else:
        where = f"cpu, {args.threads} torch thread(s)"
    model_line = (
        f"gpu: random-init Qwen2.5-{args.shape}-shape model, {params / 1e6:,.1f}M parameters, "
        f"{next(model.parameters()).dtype}, {weight_bytes / 1e9:.3g} GB of weights; {where}"
    )
    gen_line = (
        f"generation: prompts of {args.prompt_tokens} tokens, {new} new tokens (greedy), "
        f"batches {batches}; capture: layers {list(layers)} x {n_pos} positions; "
        f"{args.repeats} repeats interleaved"
    )
    lora_line = (
        f"lora: rank {args.lora_rank} on {'/'.join(LORA_TARGETS)}, {lora.trainable} trainable "
        f"parameters, batch {args.lora_batch} x {args.lora_seq} tokens"
    )
    header = [model_line, gen_line, lora_line, load_line(load_before, load_after)]
    meta = {
        "args": vars(args),
        "shape": shape,
        "gpu": gpu,
        "layers": list(layers),
        "weight_bytes": weight_bytes,
        "torch": torch.__version__,
        "load_before": load_before,
        "load_after": load_after,
    }
    return report("gpu", header, times, ratios, goals, figures, meta, args.out)


if __name__ == "__main__":
    sys.exit(main())
