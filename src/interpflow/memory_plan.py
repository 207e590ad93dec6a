"""The GPU rules of a plan, what each runs, and whether it fits the GPUs it asks for.

Read at planning from the instances' configs (standard library only: every parse imports it):
for each instance the GPU rules it runs (a rule with ``resources: gpu``), each as an
:class:`interpflow.memory.Workload` (batch and tokens from the keys that set them in that
rule's job), priced by :func:`interpflow.memory.estimate` on the model's shape and compared
with ``model.gpus x gpu.memory_gb``. ``snakemake -n`` prints the table
(:func:`format_table`); a rule that does not fit stops the plan (:func:`check_fit`).

Prompt lengths are not known before the prompts are made: a generation's prompt counts
``gpu.prompt_tokens``. A ``vllm`` evaluation pages its cache and runs as many sequences as
fit, so it needs the cache of one sequence only. The atlas reads its steering instance's
model at that instance's eval batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from interpflow.config import ConfigError
from interpflow.memory import GB, Shape, Workload, estimate, fitting_changes


@dataclass(frozen=True)
class GpuJob:
    """One GPU rule of one instance: its workload and the dotted config key behind each
    :class:`~interpflow.memory.Workload` field a user would change."""

    rule: str
    instance: str
    model: str
    work: Workload
    keys: Mapping[str, str] = field(default_factory=dict)


def _job(rule, key, inst, *, kind, block, batch, tokens, new_tokens=None, train=None):
    """A :class:`GpuJob` of instance ``inst`` (config key ``key``): ``batch`` and
    ``new_tokens`` are key names in ``inst[block]``; ``tokens`` a key there or a number."""
    model, cfg = inst["model"], inst[block]
    work = {
        "kind": kind,
        "batch": cfg[batch],
        "dtype": model["dtype"],
        "gpus": model.get("gpus", 1),
    }
    keys = {"batch": f"{key}.{block}.{batch}", "gpus": f"{key}.model.gpus"}
    keys["dtype"] = f"{key}.model.dtype"
    work["tokens"] = cfg[tokens] if isinstance(tokens, str) else tokens
    if new_tokens:
        work["new_tokens"] = cfg[new_tokens]
    if train is not None:
        adapter = train["adapter"]
        work |= {
            "rank": adapter["rank"],
            "modules": tuple(adapter["target_modules"]),
            "quantization": train.get("quantization", "none"),
            "optimizer": train.get("optimizer", "adamw"),
            "gradient_checkpointing": train.get("gradient_checkpointing", False),
        }
        for name in ("quantization", "optimizer", "gradient_checkpointing"):
            keys[name] = f"{key}.{block}.{name}"
    return GpuJob(rule, key.split(".", 1)[1], model["name"], Workload(**work), keys)


def _eval_job(rule, key, inst, prompt_tokens):
    """An inoculation evaluation (hf or vllm, eval block)."""
    job = _job(
        rule, key, inst, kind="generate", block="eval", batch="batch_size",
        tokens=prompt_tokens, new_tokens="max_new_tokens",
    )  # fmt: skip
    if inst["eval"]["backend"] == "vllm":
        job = GpuJob(job.rule, job.instance, job.model, replace(job.work, batch=1), job.keys)
    return job


def _inoculation(key, inst, prompt_tokens):
    train = inst["training"]
    fit = {"kind": "train", "block": "training", "batch": "batch_size", "tokens": "max_seq_len"}
    jobs = []
    if not inst["em"]["only"]:
        gen = {"kind": "generate", "tokens": prompt_tokens, "new_tokens": "max_new_tokens"}
        jobs.append(_job("inoculation_data", key, inst, block="datagen", batch="batch_size", **gen))
        if train["prompts"] is None or train["prompts"]:
            tokens = train["max_seq_len"]
            jobs.append(
                _job("inoculation_logprobs", key, inst, kind="forward", block="logprobs",
                     batch="batch_size", tokens=tokens)
            )  # fmt: skip
        jobs.append(_job("inoculation_train", key, inst, train=train, **fit))
        jobs.append(_eval_job("inoculation_eval", key, inst, prompt_tokens))
        if inst["elicitation"]["enabled"]:
            jobs.append(_eval_job("inoculation_elicitation_completions", key, inst, prompt_tokens))
    if inst["data"].get("em_train_jsonl"):
        jobs.append(_job("inoculation_em_train", key, inst, train=train, **fit))
        jobs.append(_eval_job("inoculation_em_eval", key, inst, prompt_tokens))
    return jobs


def _steering(key, inst, prompt_tokens):
    gen = {"kind": "generate", "tokens": prompt_tokens, "new_tokens": "max_new_tokens"}
    forward = {"kind": "forward", "block": "eval", "batch": "batch_size", "tokens": prompt_tokens}
    train = inst["train"]
    return [
        _job("steering_data", key, inst, block="data", batch="batch_size", **gen),
        _job("steering_adapters", key, inst, kind="train", block="train", batch="batch_size",
             tokens="max_seq_len", train=train | {"adapter": inst["adapter"]}),
        _job("steering_eval", key, inst, **forward),
        _job("steering_baselines", key, inst, **forward),
    ]  # fmt: skip


def _deception(key, inst, prompt_tokens):
    gen = {"block": "generation", "batch": "batch_size", "tokens": prompt_tokens}
    jobs = [
        _job("deception_generate", key, inst, kind="generate", new_tokens="max_new_tokens", **gen)
    ]
    if inst["quant_transfer"]["enabled"]:
        tokens = prompt_tokens + inst["generation"]["max_new_tokens"]
        jobs.append(
            _job("deception_quant_transfer", key, inst, kind="forward", block="quant_transfer",
                 batch="batch_size", tokens=tokens)
        )  # fmt: skip
    for rule, block in (
        ("deception_protocol", "protocol"),
        ("deception_transfer_capture", "transfer"),
    ):
        if inst[block]["enabled"]:
            jobs.append(_job(rule, key, inst, kind="generate", new_tokens="max_new_tokens", **gen))
    return jobs


def _tribunal(key, inst, prompt_tokens):
    gen = {"block": "generation", "batch": "batch_size"}
    tokens = prompt_tokens + inst["generation"]["max_new_tokens"]
    return [
        _job("tribunal_generate", key, inst, kind="generate", tokens=prompt_tokens,
             new_tokens="max_new_tokens", **gen),
        _job("tribunal_tokens", key, inst, kind="forward", tokens=tokens, **gen),
        _job("tribunal_control", key, inst, kind="forward", tokens=tokens, **gen),
    ]  # fmt: skip


STUDY_JOBS = {
    "deception": _deception,
    "tribunal": _tribunal,
    "inoculation": _inoculation,
    "steering": _steering,
}


def instance_jobs(*, study: str, name: str, inst: Mapping, prompt_tokens: int) -> list[GpuJob]:
    """The GPU rules instance ``name`` of ``study`` (its config ``inst``, defaults filled)
    runs, each with its workload."""
    return STUDY_JOBS[study](f"{study}.{name}", inst, prompt_tokens)


def atlas_jobs(
    *, models: list[str], steering: Mapping[str, Mapping], prompt_tokens: int
) -> list[GpuJob]:
    """Rule ``atlas`` of each model in ``models``: the forward pass of the first steering
    instance on it (``steering``: name -> config); an atlas without one runs no model."""
    jobs = []
    for model in models:
        for name, inst in steering.items():
            if inst["model"]["name"] == model:
                job = _job("atlas", f"steering.{name}", inst, kind="forward", block="eval",
                           batch="batch_size", tokens=prompt_tokens)  # fmt: skip
                jobs.append(GpuJob("atlas", model, model, job.work, job.keys))
                break
    return jobs


def plan_rows(
    *, jobs: list[GpuJob], shapes: Mapping[str, Shape | None], memory_gb: float
) -> list[dict]:
    """One row per job: its estimate by term (None for a model of unknown shape), its limit
    (``gpus x memory_gb``, bytes) and whether it fits (None: unknown)."""
    rows = []
    for job in jobs:
        shape = shapes.get(job.model)
        limit = job.work.gpus * memory_gb * GB
        terms = estimate(shape=shape, work=job.work) if shape else None
        fits = None if terms is None else terms["total"] <= limit
        rows.append({"job": job, "shape": shape, "terms": terms, "limit": limit, "fits": fits})
    return rows


def format_table(*, rows: list[dict], memory_gb: float) -> str:
    """The rows as a fixed-width table (GB = 1e9 bytes)."""
    terms_shown = ("weights", "adapter", "activations", "kv_cache", "logits", "overhead", "total")
    head = ("rule", "instance", "model", "gpus", "weights", "adapter", "activ", "kv", "logits")
    head += ("ctx", "total", "limit", "fits")
    lines = [
        (
            f"GPU memory at planning (GB = 1e9 B; limit = model.gpus x gpu.memory_gb = {memory_gb:g}; "
            "activ: activations, kv: KV cache, ctx: CUDA context; interpflow.memory):"
        )
    ]
    table = [head]
    for row in rows:
        job, terms = row["job"], row["terms"]
        cells = [job.rule, job.instance, job.model, str(job.work.gpus)]
        if terms is None:
            cells += ["unknown", "", "", "", "", "", "", _gb(row["limit"]), "?"]
        else:
            cells += [_gb(terms[n]) for n in terms_shown]
            cells += [_gb(row["limit"]), "yes" if row["fits"] else "NO"]
        table.append(tuple(cells))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        cells = (c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def check_fit(*, rows: list[dict], memory_gb: float) -> None:
    """Raise one :class:`ConfigError` naming every rule that does not fit: its estimate, its
    limit, and the keys that would make it fit."""
    problems = []
    for row in rows:
        if row["fits"] is not False:
            continue
        job, terms = row["job"], row["terms"]
        work = job.work
        changes, gpus = fitting_changes(shape=row["shape"], work=work, limit=row["limit"])
        fixes = [f"{job.keys[f]}: {_yaml(v)}" for f, v in changes.items() if f in job.keys]
        where = f"set {', '.join(fixes)}; or " if fixes else ""
        parts = ", ".join(
            f"{n} {terms[n] / GB:.1f}"
            for n in ("weights", "adapter", "activations", "kv_cache", "logits")
            if terms[n]
        )
        problems.append(
            f"rule {job.rule} of {job.instance} ({job.model}) needs {terms['total'] / GB:.1f} GB of GPU "
            f"memory ({parts}) but asks for {work.gpus} GPU x {memory_gb:g} GB = {row['limit'] / GB:.1f} "
            f"GB: {where}set {job.keys['gpus']}: {gpus} (or gpu.memory_gb for larger GPUs)"
        )
    if problems:
        raise ConfigError("config: GPU memory (interpflow.memory):\n  " + "\n  ".join(problems))


def _gb(size: float) -> str:
    return f"{size / GB:.1f}" if size >= 10 * GB else f"{size / GB:.2f}"


def _yaml(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
