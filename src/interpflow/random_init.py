"""Random-init control models: a copy of a model with the same config (architecture, sizes)
and the same tokenizer, but seeded random weights.

A probe that reads a class off a random network's activations reads the input, not anything
the model learned; the same pipeline on such a copy is the control every probe result stands
beside. A model is declared once by name with ``init: random`` (``models.<name>: {source:
smollm2, init: random}``); rule ``models_random_init`` runs :func:`build_random_init` into
``results/models/<name>/``, and any instance naming that model is the control of the same
instance on the source.

The weights are ``AutoModelForCausalLM.from_config(config)`` under a fixed torch seed,
derived from ``init_seed`` by :func:`torch_seed` (a hash, so that seed 0 does not replay the
``manual_seed(0)`` a seeded model such as the stub was itself built with). The global torch
RNG is left as it was. Standard library only at module level.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

#: Written into the model directory: where the copy came from and how it was drawn.
MARKER = "random_init.json"


def torch_seed(init_seed: int) -> int:
    """The torch seed of ``init_seed``: 63 bits of sha256 of ``interpflow.random_init:<seed>``."""
    digest = hashlib.sha256(f"interpflow.random_init:{init_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def build_random_init(
    *,
    source: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Save a random-init copy of model ``source`` (a directory or a hub id) to ``out_dir``:
    its config and tokenizer (and generation config, where it has one), new weights drawn by
    ``from_config`` under :func:`torch_seed` of ``seed``, in the dtype the config names (fp32
    when it names none). Written to a temporary sibling, then renamed. Returns a summary (also
    written to ``out_dir``/:data:`MARKER`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out_dir = Path(out_dir)
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(source, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    dtype = getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed(seed))
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, trust_remote_code=trust_remote_code
        )
    try:
        model.generation_config = GenerationConfig.from_pretrained(source, revision=revision)
    except OSError:  # the source has no generation_config.json: keep the one from_config made
        pass
    summary = {
        "source": str(source),
        "revision": revision,
        "init": "random",
        "init_seed": int(seed),
        "torch_seed": torch_seed(seed),
        "architecture": type(model).__name__,
        "dtype": str(dtype).removeprefix("torch."),
        "num_layers": config.num_hidden_layers,
        "d_model": config.hidden_size,
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    save_built_model(
        model=model, tokenizer=tokenizer, out_dir=out_dir, marker=MARKER, summary=summary
    )
    return summary


def save_built_model(*, model, tokenizer, out_dir: Path, marker: str, summary: dict) -> None:
    """Save a model a rule builds, its tokenizer and ``summary`` (as ``marker``, JSON) into a
    temporary sibling of ``out_dir``, then rename it into place (``out_dir`` replaced)."""
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / marker).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
