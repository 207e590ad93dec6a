"""The planning estimate of a LoRA training step (interpflow.memory) beside its measured peak.

Loads a model directory (e.g. results/models/smollm2), puts a LoRA adapter on the given
modules, and runs ``--steps`` optimizer steps (AdamW; the second and later steps hold the
optimizer state during the backward pass, as a long run does) of ``--batch`` x ``--seq``
random tokens with the labels = the inputs. Prints one JSON object:

* ``measured_bytes``: on CPU the peak resident set (``resource.getrusage`` ru_maxrss) over
  the run less the peak before the model was loaded (the interpreter, torch, transformers
  and peft), the script run with ``MALLOC_MMAP_THRESHOLD_=65536`` (it re-executes itself so)
  so that glibc hands every freed tensor back (with its default it keeps freed blocks and
  the peak reads 1.3-1.5x the live tensors); on CUDA ``torch.cuda.max_memory_allocated``;
* ``estimate``: :func:`interpflow.memory.estimate` of the same step, by term, without the
  CUDA context on CPU (``total`` is the figure to compare);
* ``ratio``: measured / estimated total.

    python benchmarks/memory_check.py --model results/models/smollm2 --batch 4 --seq 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path


def _rss() -> int:
    """Peak resident set of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model directory (with config.json)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--modules", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from interpflow.memory import Workload, estimate, shape_from_config

    torch.manual_seed(0)
    config = json.loads((Path(args.model) / "config.json").read_text())
    shape = shape_from_config(config=config)
    modules = tuple(args.modules.split(","))
    ids = torch.randint(0, shape.vocab, (args.batch, args.seq))
    before = _rss()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype))
    model.to(args.device)
    model.train()  # as the trainer: checkpointing only acts in training mode
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(
        model, LoraConfig(r=args.rank, lora_alpha=16, target_modules=list(modules))
    )
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    ids = ids.to(args.device)
    for _ in range(args.steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del loss
    cuda = args.device.startswith("cuda")
    measured = torch.cuda.max_memory_allocated() if cuda else _rss() - before
    work = Workload(
        kind="train",
        batch=args.batch,
        tokens=args.seq,
        dtype=args.dtype,
        rank=args.rank,
        modules=modules,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    terms = estimate(shape=shape, work=work, context=0.0)
    out = {
        "device": args.device,
        "batch": args.batch,
        "seq": args.seq,
        "rank": args.rank,
        "dtype": args.dtype,
        "gradient_checkpointing": args.gradient_checkpointing,
        "measured_bytes": measured,
        "estimate": terms,
        "ratio": measured / terms["total"],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # read by glibc at start: re-execute
        env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
