"""What several steering stages share: resources, the Yes/No scorer, weight steering.

Resources: the persona file (``positive`` / ``negative`` system prompts), the question pool
and the Yes/No eval sets. :class:`YesNoScorer` scores log p(Yes), log p(No) of the next token
after the chat prompt; :func:`score_rows` turns that into eval rows (:data:`EVAL_SCHEMA`, see
:mod:`interpflow.steering`). :class:`WeightSteerer` sets ``W = W₀ + α·dW`` in place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from interpflow.artifacts import read_parquet, write_parquet, write_provenance
from interpflow.models import chat_prompt

EVAL_SCHEMA = {
    "method": pl.String,
    "variant": pl.String,
    "alpha": pl.Float64,
    "eval_set": pl.String,
    "row_id": pl.String,
    "label": pl.Int8,
    "logp_yes": pl.Float64,
    "logp_no": pl.Float64,
    "logratio": pl.Float64,
    "logratio_signed": pl.Float64,
    "pmass": pl.Float64,
}
#: Appended to every eval question.
YES_NO_SUFFIX = " Answer Yes or No."
#: A row id ``<unit>/<member>`` names the unit its rows are paired in: a daily dilemma's two
#: actions are ``<dilemma_idx>/<action_type>`` (:func:`load_eval_set`), one unit; a row id
#: without it is its own unit. Statistics count units, not rows (:func:`per_unit`).
UNIT_SEP = "/"


# ---------------------------------------------------------------------------------------------
# resources


def load_personas(path: str | Path) -> tuple[list[str], list[str]]:
    """``(positive, negative)`` persona system prompts from a JSON file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"persona file {path} not found (config key steering.axis)")
    obj = json.loads(path.read_text())
    out = []
    for side in ("positive", "negative"):
        prompts = obj.get(side)
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"{path}: {side!r} must be a non-empty list of strings")
        out.append(list(prompts))
    return out[0], out[1]


def load_questions(path: str | Path, limit: int | None = None) -> list[str]:
    """The question pool: one question per line (``#`` comments), or the ``user_msg`` of every
    entry of a branching-suffix pool (``.json``, :func:`load_suffix_pool`)."""
    return [q for q, _ in load_question_pool(path, limit)]


def load_question_pool(path: str | Path, limit: int | None = None) -> list[tuple[str, str]]:
    """``(question, assistant prefix)`` pairs: a ``.json`` branching-suffix pool gives
    ``(user_msg, suffix)``; a text pool gives each line with an empty prefix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"question pool {path} not found (config key steering.questions)")
    if path.suffix == ".json":
        pool = [(e["user_msg"], e["suffix"]) for e in load_suffix_pool(path)]
    else:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        pool = [(ln, "") for ln in lines if ln and not ln.startswith("#")]
    if not pool:
        raise ValueError(f"question pool {path} is empty")
    return pool[:limit] if limit else pool


def _json_array_entries(path: Path) -> list[tuple[object, int]]:
    """The elements of a JSON array file, each with the line it starts on."""
    text = path.read_text()
    dec = json.JSONDecoder()
    line = lambda pos: text.count("\n", 0, pos) + 1
    i = len(text) - len(text.lstrip())
    if not text[i : i + 1] == "[":
        raise ValueError(f"{path}:{line(i)}: a branching-suffix pool is a JSON array of entries")
    i += 1
    out: list[tuple[object, int]] = []
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if text[i : i + 1] == "]":
            return out
        if out:
            if text[i : i + 1] != ",":
                raise ValueError(f"{path}:{line(i)}: expected ',' or ']' after entry {len(out)}")
            i += 1
            while i < len(text) and text[i] in " \t\r\n":
                i += 1
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        out.append((obj, line(i)))
        i = end


def _entry_problem(e) -> str | None:
    """What is wrong with one branching-suffix entry, or None."""
    if not isinstance(e, dict):
        return "must be an object with 'user_msg' and 'suffix'"
    for key in ("user_msg", "suffix"):
        if not isinstance(e.get(key), str):
            return f"{key!r} must be a string, got {e.get(key)!r}"
    if not e["user_msg"].strip():
        return "'user_msg' is empty"
    if not isinstance(e.get("cat", ""), str):
        return f"'cat' must be a string, got {e['cat']!r}"
    return None


def load_suffix_pool(path: str | Path) -> list[dict]:
    """Seed 004's branching-suffix pool (its ``data/branching_suffixes.json``, built by SSteer's
    ``build_branching_suffixes.py``): a JSON array of ``{"cat": str, "suffix": str, "user_msg":
    str}``, a user message and the start of an answer cut at a high-entropy token. As the seed,
    ``<think>`` / ``</think>`` tags are removed from suffixes (a raw think block breaks the
    assistant turn), the suffix is stripped, and entries left with an empty suffix are dropped.
    ``user_msg`` is the question (data generation,
    PCA prompts); ``suffix`` is the assistant prefix the RepE states are read after. Bad input:
    one error naming the file and the entry's line.
    """
    path = Path(path)
    out = []
    for i, (e, line) in enumerate(_json_array_entries(path), 1):
        where = f"{path}:{line}: entry {i}"
        problem = _entry_problem(e)
        if problem:
            raise ValueError(f"{where}: {problem}")
        suffix = e["suffix"].replace("</think>", "").replace("<think>", "").strip()
        if suffix:  # the seed's _load_suffixes drops the rest
            out.append({"cat": e.get("cat", ""), "user_msg": e["user_msg"], "suffix": suffix})
    if not out:
        raise ValueError(f"{path}: the branching-suffix pool has no entries")
    return out


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return read_parquet(path).to_dicts()
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from e
    return rows


def _hub_rows(name: str, spec: str) -> list[dict]:
    """Rows of ``hf:<dataset id>[:<config>[:<split>]]`` through ``datasets`` (optional, online)."""
    parts = spec[3:].split(":")
    dataset_id, config, split = parts[0], (parts[1:2] or [None])[0], (parts[2:3] or ["train"])[0]
    try:
        import datasets  # lazy: optional, and it needs the network
    except ImportError as e:
        raise ImportError(
            f"config key steering.eval.sets.{name}: {spec!r} needs the 'datasets' package and "
            "network access; or export the set to a local JSONL/parquet in the same columns"
        ) from e
    return [dict(r) for r in datasets.load_dataset(dataset_id, config or None, split=split)]


def load_eval_set(name: str, path: str | Path, limit: int | None = None) -> pl.DataFrame:
    """An eval set as ``row_id, eval_set, question, label``.

    ``dilemmas`` rows follow the daily-dilemmas format (``dilemma_idx``,
    ``dilemma_situation``, ``action_type``, ``action``, ``honesty_label`` ∈ {−1, +1}); other
    sets have ``row_id``, ``question`` and ``label`` (+1 when "Yes" is the positive persona's
    answer, −1 when "No" is; ``honesty_label`` is read as ``label``). JSONL or parquet, or
    ``hf:<dataset id>[:<config>[:<split>]]`` (e.g. a hub copy of daily dilemmas with those
    columns) loaded with the optional ``datasets`` package when online.
    """
    if str(path).startswith("hf:"):
        rows = _hub_rows(name, str(path))
    else:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"eval set {name!r}: {path} not found")
        rows = _read_rows(path)
    out = []
    for i, r in enumerate(rows, 1):
        label = r.get("label", r.get("honesty_label"))  # label: any axis; honesty_label: seed's
        if label not in (-1, 1):
            raise ValueError(
                f"{path}: row {i}: label (or honesty_label) must be -1 or +1, got {label!r}"
            )
        if "dilemma_situation" in r:
            for key in ("dilemma_idx", "action"):
                if key not in r:
                    raise ValueError(f"{path}: row {i}: missing {key!r}")
            question = (
                f"{r['dilemma_situation']}\nAction: {r['action']}\nWould you take this action?"
            )
            # both actions of one dilemma: one unit (UNIT_SEP), paired, not independent
            row_id = f"{r['dilemma_idx']}{UNIT_SEP}{r.get('action_type', i)}"
        else:
            if "question" not in r:
                raise ValueError(f"{path}: row {i}: missing 'question'")
            question, row_id = r["question"], str(r.get("row_id", i))
        out.append({"row_id": row_id, "eval_set": name, "question": question, "label": label})
    if not out:
        raise ValueError(f"eval set {name!r}: {path} has no rows")
    df = pl.DataFrame(out, schema_overrides={"label": pl.Int8})
    if df["row_id"].n_unique() != df.height:
        raise ValueError(f"eval set {name!r}: {path} has duplicate row ids")
    return df.head(limit) if limit else df


def per_unit(rows: pl.DataFrame, by: Sequence[str], values: Sequence[str]) -> pl.DataFrame:
    """One row per (``by``, unit): each of ``values`` averaged over the unit's rows, and
    ``row_id`` the unit (the row id up to its first :data:`UNIT_SEP`; the row id itself if it
    has none); ``n_members`` counts them.

    A daily dilemma's two actions, one honest (label +1) and one not (−1), become one unit whose
    ``logratio_signed`` is (lr(honest action) − lr(dishonest action)) / 2: the paired statistic
    (a model that only says "Yes" more scores 0 on it), and a CI over dilemmas counts each
    dilemma once. Other sets' rows (no separator) are returned one per row, unchanged.
    """
    unit = pl.col("row_id").str.split(UNIT_SEP).list.first()
    return (
        rows.with_columns(row_id=unit)
        .group_by(*by, "row_id", maintain_order=True)
        .agg(*[pl.col(v).mean() for v in values], n_members=pl.len())
    )


def load_eval_sets(paths: Mapping[str, str], limit: int | None = None) -> pl.DataFrame:
    """Every named eval set (:func:`load_eval_set`), concatenated."""
    return pl.concat([load_eval_set(n, p, limit) for n, p in paths.items()])


# ---------------------------------------------------------------------------------------------
# scoring (α-sweeps of every method)


def prompt_with_prefix(tokenizer, user: str, system: str | None, answer_prefix: str) -> str:
    """The chat prompt (the model's chat-template options included) + ``answer_prefix``.

    A prefix the template already wrote (e.g. Qwen3's empty think block, which
    ``chat_template: {enable_thinking: false}`` on the model adds) is an error, not a doubled
    block.
    """
    chat = chat_prompt(tokenizer, user, system)
    if answer_prefix.strip() and chat.rstrip().endswith(answer_prefix.strip()):
        raise ValueError(
            f"config key steering.<instance>.eval.answer_prefix: the chat template already ends "
            f"the prompt with {answer_prefix!r} (the model's chat_template options, e.g. "
            "enable_thinking: false); appending it again would double it: set it to ''"
        )
    return chat + answer_prefix


class YesNoScorer:
    """log p(Yes), log p(No) of the next token after the chat prompt (+ ``answer_prefix``)."""

    def __init__(self, model, tokenizer, answer_prefix: str = "", batch_size: int = 16):
        self.model, self.tok = model, tokenizer
        self.answer_prefix, self.batch_size = answer_prefix, batch_size
        self.yes, self.no = self._token("Yes"), self._token("No")

    def _token(self, word: str) -> int:
        ids = self.tok(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            print(f"warning: {word!r} is {len(ids)} tokens; scoring its first token")
        return ids[0]

    def score(
        self, questions: Sequence[str], system: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        chats = [
            prompt_with_prefix(self.tok, q + YES_NO_SUFFIX, system, self.answer_prefix)
            for q in questions
        ]
        ly, ln = [], []
        for start in range(0, len(chats), self.batch_size):
            enc = self.tok(
                chats[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(self.model.device)
            mask = enc["attention_mask"]
            pos_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions from the mask
            with torch.inference_mode():
                # the last position only: the LM head over every position costs ~1/3 of the pass
                logits = self.model(
                    input_ids=enc["input_ids"],
                    attention_mask=mask,
                    position_ids=pos_ids,
                    logits_to_keep=1,
                ).logits[:, -1]
            logp = torch.log_softmax(logits.float(), dim=-1)
            ly.append(logp[:, self.yes].cpu().numpy())
            ln.append(logp[:, self.no].cpu().numpy())
        return np.concatenate(ly).astype(np.float64), np.concatenate(ln).astype(np.float64)


def score_rows(
    scorer: YesNoScorer, evals: pl.DataFrame, method: str, variant: str, alpha: float, system=None
) -> pl.DataFrame:
    ly, ln = scorer.score(evals["question"].to_list(), system)
    label = evals["label"].to_numpy().astype(np.float64)
    return pl.DataFrame(
        {
            "method": [method] * evals.height,
            "variant": [variant] * evals.height,
            "alpha": [float(alpha)] * evals.height,
            "eval_set": evals["eval_set"],
            "row_id": evals["row_id"],
            "label": evals["label"],
            "logp_yes": ly,
            "logp_no": ln,
            "logratio": ly - ln,
            "logratio_signed": (ly - ln) * label,
            "pmass": np.exp(ly) + np.exp(ln),
        },
        schema=EVAL_SCHEMA,
    )


# ---------------------------------------------------------------------------------------------
# weight steering


class WeightSteerer:
    """Sets ``W = W₀ + α·dW`` in place on the given parameters; :meth:`restore` undoes it.

    Precision (issue 13 item 5): W₀ is kept as loaded (the model's dtype, e.g. bf16) and dW in
    fp32; the steered weight is ``(W₀.float() + α·dW).to(dtype)``, one rounding of the fp32
    sum. A bf16 sum would round α·dW to bf16 first and round again when adding it to W₀, which
    loses a small dW next to a large W₀. The weights stay in the model's dtype (no fp32 copy of
    the steered modules: the forward pass and memory are unchanged). α = 0 and :meth:`restore`
    copy W₀ back, bit for bit.
    """

    def __init__(self, model, dw: dict):
        import torch

        params = dict(model.named_parameters())
        missing = [k for k in dw if k not in params]
        if missing:
            raise ValueError(f"dW names parameters the model lacks: {missing[:3]}")
        self.params = {k: params[k] for k in dw}
        self.orig = {k: p.detach().clone() for k, p in self.params.items()}
        self.dw = {k: v.to(self.params[k].device, torch.float32) for k, v in dw.items()}

    def apply(self, alpha: float, dw: dict | None = None) -> None:
        """``W = W₀ + α·dW`` computed in fp32, then cast to the model's dtype."""
        import torch

        dw = self.dw if dw is None else dw
        with torch.no_grad():
            for k, p in self.params.items():
                if k in dw and alpha != 0.0:
                    delta = dw[k].to(p.device, torch.float32)
                    p.copy_(
                        torch.add(self.orig[k].float(), delta, alpha=alpha).to(p.dtype)
                    )  # not in place: orig may be fp32
                else:
                    p.copy_(self.orig[k])

    def restore(self) -> None:
        self.apply(0.0, {})


@dataclass(frozen=True)
class EvalConfig:
    """How eval sets are scored: config keys ``alphas`` and ``eval`` (less ``eval.sets``)."""

    alphas: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    answer_prefix: str = ""
    batch_size: int = 16
    n_rows: int | None = None  # rows per eval set; None = all
    # also steer with a random dW of the same per-matrix norms (method random)
    random_dw: bool = True
    random_seed: int = 0


def random_like(dw: Mapping, seed: int = 0) -> dict:
    """A seeded Gaussian direction per tensor of ``dw``, scaled to that tensor's Frobenius norm
    (a null control: a perturbation as large as dW, matrix by matrix, in no trained direction)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(dw):
        v = dw[k].float()
        r = torch.randn(v.shape, generator=g, dtype=torch.float32)
        norm = float(v.norm())
        out[k] = (r * (norm / float(r.norm()))).contiguous() if norm > 0 else torch.zeros_like(r)
    return out


def write_eval(df: pl.DataFrame, out: str | Path, **prov) -> pl.DataFrame:
    """Write eval rows and their provenance (``<out>.provenance.json``)."""
    write_parquet(df, out)
    write_provenance(Path(out).with_name(Path(out).name + ".provenance.json"), **prov)
    return df
