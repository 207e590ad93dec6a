"""Resume checkpoints of adapter training (:func:`interpflow.adapters.train_adapter`).

Every ``resume_every`` optimizer steps the training state (trainable weights as safetensors,
optimizer + scheduler + RNG state, step, log so far) is written to
``<out_dir>.resume/step-<N>/``; a rerun with the same configuration picks up the newest one
and ends with the same adapter as an uninterrupted run (bit for bit on CPU: the data order is
a function of the seed and the torch RNG, which drives dropout, is part of the state). A
checkpoint is written into a temporary folder, its ``meta.json`` (with the sha256 of the other
files) last, then renamed into place, and the two newest are kept: a kill at any moment
leaves the previous checkpoint intact. A checkpoint that is damaged (a file truncated, altered
or missing) is skipped with a warning naming the file, for the next older one or step 0; one
written for another configuration (its ``key`` differs) is discarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path


def resume_dir_for(out_dir: str | Path) -> Path:
    """``<out_dir>.resume``: the checkpoints of the run that writes ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".resume")


def _trainable_state(model) -> dict:
    return {
        n: p.detach().cpu().clone().contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


#: The files of a checkpoint besides its ``meta.json`` (which holds their sha256).
CHECKPOINT_FILES = ("trainable.safetensors", "optim.pt")


def _checkpoints(rdir: Path) -> list[Path]:
    """The checkpoints ``step-<N>`` in ``rdir``, newest first (a temporary folder never matches)."""
    return sorted(rdir.glob("step-*"), reverse=True)


def save_resume(rdir: Path, model, opt, sched, step: int, log_rows: list, key: str) -> None:
    """Write checkpoint ``rdir/step-<N>`` atomically; keep it and the one before it."""
    import torch
    from safetensors.torch import save_file

    final = rdir / f"step-{step:08d}"
    tmp = rdir / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(
        {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        tmp / "optim.pt",
    )
    sums = {name: file_hash(tmp / name) for name in CHECKPOINT_FILES}
    meta = {"step": step, "key": key, "log": log_rows, "sha256": sums}
    (tmp / "meta.json").write_text(json.dumps(meta))  # last: a checkpoint without it is ignored
    if final.exists():  # this step's checkpoint was damaged and has been redone
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in _checkpoints(rdir)[2:]:
        shutil.rmtree(old)


def _checkpoint_meta(ckpt: Path) -> tuple[dict | None, str | None]:
    """(meta, None) for an intact checkpoint, else (None, what is wrong, naming the file)."""
    meta_file = ckpt / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
        sums = {name: meta["sha256"][name] for name in CHECKPOINT_FILES}
        meta["step"], meta["log"] = int(meta["step"]), list(meta["log"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{meta_file} is unreadable ({type(e).__name__}: {e})"
    for name, digest in sums.items():
        if not (ckpt / name).exists():
            return None, f"{ckpt / name} is missing"
        if file_hash(ckpt / name) != digest:
            return None, f"{ckpt / name} is damaged (its sha256 differs from meta.json's)"
    return meta, None


def load_resume(rdir: Path, model, opt, sched, key: str, log) -> tuple[int, list]:
    """Restore the newest intact checkpoint of this configuration: (step, log rows), or (0, [])."""
    import torch
    from safetensors.torch import load_file

    found = _checkpoints(rdir)
    for ckpt in found:
        meta, problem = _checkpoint_meta(ckpt)
        if meta is not None and meta.get("key") != key:
            log(f"warning: {ckpt} was written for another configuration: training from step 0")
            for old in found:
                shutil.rmtree(old)
            (rdir / "interruptions.jsonl").unlink(missing_ok=True)
            return 0, []
        if meta is None:
            log(f"warning: {problem}: discarding the resume checkpoint {ckpt}")
            shutil.rmtree(ckpt)
            continue
        weights = load_file(str(ckpt / "trainable.safetensors"))
        extra = torch.load(ckpt / "optim.pt", weights_only=False)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))
        opt.load_state_dict(extra["optimizer"])
        sched.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["rng"])
        if extra["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(extra["cuda_rng"])
        log(f"resumed from {ckpt} at step {meta['step']}")
        return meta["step"], meta["log"]
    if found:
        log(f"warning: no intact resume checkpoint in {rdir}: training from step 0")
    return 0, []


def file_hash(path: str | Path) -> str:
    """The first 16 hex digits of the sha256 of the file ``path``."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


__all__ = ["CHECKPOINT_FILES", "file_hash", "load_resume", "resume_dir_for", "save_resume"]
