"""The tribunal study (seed 002): is there an "implicit value" direction in a reasoning model?

Chains of thought are sampled for grade-school maths problems, labelled correct / incorrect /
unparseable by parsing their final answer, and a linear probe per layer × aggregation asks
whether the residual stream separates correct from incorrect traces. Read top to bottom:

1. :func:`load_problems` — GSM8K-format records (``question``; ``answer`` ending in
   ``#### <number>``) from a local JSONL / JSON / parquet file, or from a hub dataset id
   (``openai/gsm8k``) through ``datasets`` (imported lazily; only when installed and online).
2. :func:`build_prompts` — the attempt table: problems × ``samples_per_problem`` in attempt
   order, cut at ``max_attempts``; ``prompt_id`` = hash of (problem id, sample index),
   ``category`` = problem id.
3. :func:`parse_final_answer` / :func:`parse_number` — the answer parser.
4. :func:`label_traces` — parsed answer vs gold: ``correct``, ``incorrect`` or
   ``unparseable`` (its own label, counted, never silently dropped).
5. :func:`collect_traces` — generation + capture through
   :func:`interpflow.generate.generate_and_capture` with a stopping rule (targets of correct
   and incorrect traces reached) checked after each resumable shard.
6. :func:`fit_tribunal_probes` — one logistic-regression probe per layer × aggregation on
   one split grouped by *problem*; accuracy / AUROC with 95% CIs against the majority
   baseline; the implicit-value directions; the figure ``probe_results.png`` and its table.

Chain of thought = the whole response. With a reasoning model the chat template usually
opens ``<think>`` in the prompt, so the response is ``…</think> final answer``; the
``response_mean`` aggregation averages every response token (the thought and the short
answer after it) and ``last_response`` is the last token before EOS. The final answer is
parsed from the text after the last ``</think>`` when the response has one.

Labels always come from the parser; there is no option to mark traces correct by fiat. On a
model that never answers (the random stub) a class is empty, so the probe stage does not
crash and does not invent a score: it writes every declared file with ``status: "skipped"``,
the reason and the class counts. The fitting code paths are exercised end to end by feeding
hand-made traces with both classes (``tests/test_tribunal_workflow.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from interpflow.artifacts import (
    atomic_path,
    read_parquet,
    stable_hash,
    write_json,
    write_parquet,
    write_provenance,
)

LABELS = ("correct", "incorrect", "unparseable")
#: The probe's positive class: directions point towards it, logits are its log-odds.
POSITIVE = "correct"

# --------------------------------------------------------------------------------------------
# 1. Numbers and answers
# --------------------------------------------------------------------------------------------

_FRAC_TEX = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}")
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+])?\s*(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+)(?!\d|\.\d))?"
)
_TEX_JUNK = re.compile(r"\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}|\\[,;!:]|\\quad|\\left|\\right")


def _clean(text: str) -> str:
    """Drop LaTeX text blocks, currency / percent signs, markdown emphasis; unify minus signs."""
    text = text.replace("\u2212", "-").replace("\u2013", "-").replace("\u00a0", " ")
    text = _FRAC_TEX.sub(r"\1/\2", text)
    text = _TEX_JUNK.sub(" ", text)
    for junk in ("\\$", "\\%", "$", "%", "*", "€", "£", "\\"):
        text = text.replace(junk, " " if junk in ("*", "\\") else "")
    return text


def parse_number(text: str) -> Fraction | None:
    """The first number in ``text`` as an exact Fraction, or None.

    Handles signs (``-``, ``+``, the Unicode minus), thousands separators (``1,234``),
    decimals, simple fractions (``3/4``, ``\\frac{3}{4}``), currency and percent signs and
    trailing units (``$1,250.00``, ``18 apples``, ``40%``).
    """
    m = _NUMBER.search(_clean(text))
    if m is None:
        return None
    value = Fraction(m.group("num").replace(",", ""))
    if m.group("den") is not None:
        den = int(m.group("den"))
        if den == 0:
            return None
        value /= den
    return -value if m.group("sign") == "-" else value


def format_number(value: Fraction | None) -> str | None:
    """Canonical text of a parsed number: ``"18"``, ``"-6"``, ``"5/2"``; None stays None."""
    if value is None:
        return None
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


@dataclass(frozen=True)
class ParsedAnswer:
    """A final answer: its exact value (None = unparseable), the matched text and the method."""

    value: Fraction | None
    text: str | None
    method: Literal["boxed", "hashes", "answer_is", "last_number", "none"]


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{…}`` / ``\\fbox{…}`` with balanced braces, in order."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


_HASHES = re.compile(r"####")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|answer)[\s*]*(?:is|:|=|would\s+be|will\s+be)[\s*:]*", re.IGNORECASE
)


def answer_region(response: str) -> str:
    """The part of a response that holds its final answer: after the last ``</think>`` if any."""
    return response.rsplit("</think>", 1)[1] if "</think>" in response else response


def parse_final_answer(response: str, last_number_fallback: bool = False) -> ParsedAnswer:
    """Parse the final answer of a chain of thought.

    In order, within :func:`answer_region`: the last ``\\boxed{}``; the last ``#### n``; the
    last "answer is n" / "final answer: n" (the first number of the rest of that sentence);
    optionally the last number anywhere. Anything else is unparseable (``method="none"``).
    """
    region = answer_region(response)
    for content in reversed(_boxed_contents(region)):
        if (v := parse_number(content)) is not None:
            return ParsedAnswer(v, content.strip(), "boxed")
    for method, pattern in (("hashes", _HASHES), ("answer_is", _ANSWER_IS)):
        for m in reversed(list(pattern.finditer(region))):
            rest = region[m.end() :].split("\n", 1)[0]
            sentence = re.split(r"\.(?!\d)|[;!?]", rest, maxsplit=1)[0]
            if (v := parse_number(sentence)) is not None:
                return ParsedAnswer(v, sentence.strip(), method)  # type: ignore[arg-type]
    if last_number_fallback:
        nums = list(_NUMBER.finditer(_clean(region)))
        if nums:
            v = parse_number(nums[-1].group(0))
            return ParsedAnswer(v, nums[-1].group(0).strip(), "last_number")
    return ParsedAnswer(None, None, "none")


def gold_answer(answer: str) -> Fraction:
    """The ground truth of a GSM8K ``answer`` field: the number after its last ``####``."""
    if "####" not in answer:
        raise ValueError("answer has no '#### <number>' line")
    value = parse_number(answer.rsplit("####", 1)[1])
    if value is None:
        raise ValueError(f"no number after '####' in {answer.rsplit('####', 1)[1]!r}")
    return value


# --------------------------------------------------------------------------------------------
# 2. Problems and the attempt table
# --------------------------------------------------------------------------------------------

PROBLEM_SCHEMA = {
    "problem_id": pl.String,
    "question": pl.String,
    "answer": pl.String,
    "gold": pl.String,
}


def _records_from_hub(source: str, hub_config: str | None, split: str) -> tuple[list[dict], str]:
    try:
        import datasets  # lazy: optional, and it needs the network
    except ImportError as e:
        raise ValueError(
            f"tribunal.problems.source {source!r} is not a local file, and loading it as a hub "
            "dataset needs the 'datasets' package (pip install datasets) and network access; "
            "or point the source at a local .jsonl/.json/.parquet file"
        ) from e
    ds = datasets.load_dataset(source, hub_config, split=split)
    return [dict(r) for r in ds], f"{source}[{hub_config}/{split}]"


def _records_from_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return read_parquet(path).to_dicts()
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records")
        return data
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line) | {"_line": n})
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    return records


def load_problems(
    source: str | Path, hub_config: str | None = "main", split: str = "test"
) -> pl.DataFrame:
    """GSM8K-format problems as ``problem_id, question, answer, gold`` (gold = canonical number).

    ``source`` is a local ``.jsonl`` / ``.json`` / ``.parquet`` file or a hub dataset id.
    Records need ``question`` and ``answer`` (ending in ``#### <number>``); ``id`` is used as
    the problem id when present, else ``<split>-<index>``. A bad record raises ValueError
    naming the file and line (or record index).
    """
    path = Path(source)
    if path.exists():
        records, where = _records_from_file(path), str(path)
    elif path.suffix in (".jsonl", ".json", ".parquet") or str(source).startswith((".", "/")):
        raise ValueError(f"tribunal.problems.source: file {source} does not exist")
    else:
        records, where = _records_from_hub(str(source), hub_config, split)
    rows = []
    for i, r in enumerate(records):
        at = f"{where}:{r['_line']}" if "_line" in r else f"{where} record {i}"
        missing = [k for k in ("question", "answer") if not r.get(k)]
        if missing:
            raise ValueError(f"{at}: missing {', '.join(missing)}")
        try:
            gold = gold_answer(str(r["answer"]))
        except ValueError as e:
            raise ValueError(f"{at}: {e}") from None
        pid = str(r["id"]) if r.get("id") is not None else f"{split}-{i:05d}"
        rows.append(
            {
                "problem_id": pid,
                "question": r["question"],
                "answer": r["answer"],
                "gold": format_number(gold),
            }
        )
    if not rows:
        raise ValueError(f"{where}: no problems")
    df = pl.DataFrame(rows, schema=PROBLEM_SCHEMA)
    dupes = df.filter(pl.col("problem_id").is_duplicated())["problem_id"].unique().sort().to_list()
    if dupes:
        raise ValueError(f"{where}: duplicate problem ids {dupes[:5]}")
    return df


def build_prompts(
    problems: pl.DataFrame,
    instruction: str,
    samples_per_problem: int,
    max_attempts: int,
    shuffle: bool = True,
    seed: int = 0,
) -> pl.DataFrame:
    """The attempt table ``prompt_id, category, prompt, problem_id, sample, gold``.

    Problems (shuffled with ``seed`` when ``shuffle``) × samples, problem-major, cut at
    ``max_attempts`` rows. ``category`` is the problem id (the group of every split).
    """
    if samples_per_problem < 1 or max_attempts < 1:
        raise ValueError("samples_per_problem and max_attempts must be >= 1")
    if shuffle:
        order = np.random.default_rng(seed).permutation(problems.height)
        problems = problems[order.tolist()]
    n_problems = -(-max_attempts // samples_per_problem)
    rows = [
        {
            "prompt_id": stable_hash([p["problem_id"], k], 16),
            "category": p["problem_id"],
            "prompt": f"{p['question'].strip()}\n\n{instruction}".strip(),
            "problem_id": p["problem_id"],
            "sample": k,
            "gold": p["gold"],
        }
        for p in problems.head(n_problems).iter_rows(named=True)
        for k in range(samples_per_problem)
    ]
    return pl.DataFrame(rows[:max_attempts])


def prepare_tribunal(
    source: str,
    hub_config: str | None,
    split: str,
    instruction: str,
    samples_per_problem: int,
    max_attempts: int,
    shuffle: bool,
    seed: int,
    problems_out: str | Path,
    prompts_out: str | Path,
) -> pl.DataFrame:
    """Stage: load problems, write them and the attempt table (+ provenance). Returns the prompts."""
    problems = load_problems(source, hub_config, split)
    prompts = build_prompts(problems, instruction, samples_per_problem, max_attempts, shuffle, seed)
    write_parquet(problems, problems_out)
    write_parquet(prompts, prompts_out)
    write_provenance(
        Path(str(prompts_out) + ".provenance.json"),
        stage="tribunal_prompts",
        source=str(source),
        hub_config=hub_config,
        split=split,
        n_problems=problems.height,
        n_attempts=prompts.height,
        n_problems_used=prompts["problem_id"].n_unique(),
        samples_per_problem=samples_per_problem,
        max_attempts=max_attempts,
        shuffle=shuffle,
        seed=seed,
        instruction=instruction,
    )
    return prompts


# --------------------------------------------------------------------------------------------
# 3. Labels
# --------------------------------------------------------------------------------------------

LABEL_SCHEMA = {
    "prompt_id": pl.String,
    "problem_id": pl.String,
    "sample": pl.Int64,
    "gold": pl.String,
    "parsed": pl.String,
    "parse_method": pl.String,
    "label": pl.String,
    "probe_label": pl.String,
    "finished": pl.Boolean,
    "response_tokens": pl.Int32,
}


def label_traces(
    generations: pl.DataFrame,
    prompts: pl.DataFrame,
    unparseable: Literal["drop", "incorrect"] = "drop",
    last_number_fallback: bool = False,
) -> pl.DataFrame:
    """One row per trace (:data:`LABEL_SCHEMA`): parsed answer, ``label`` and ``probe_label``.

    ``label`` is ``correct`` / ``incorrect`` (parsed, compared exactly with the gold number)
    or ``unparseable``. ``probe_label`` is the class the probe sees: ``label``, with
    unparseable traces null (``unparseable="drop"``) or ``incorrect`` (``"incorrect"``).
    """
    if unparseable not in ("drop", "incorrect"):
        raise ValueError(
            f"tribunal.labels.unparseable must be drop or incorrect; got {unparseable!r}"
        )
    meta = {
        r["prompt_id"]: r
        for r in prompts.select("prompt_id", "problem_id", "sample", "gold").iter_rows(named=True)
    }
    rows = []
    for g in generations.iter_rows(named=True):
        if g["prompt_id"] not in meta:
            raise ValueError(f"generation {g['prompt_id']!r} is not in the attempt table")
        m = meta[g["prompt_id"]]
        parsed = parse_final_answer(g["response"], last_number_fallback)
        if parsed.value is None:
            label = "unparseable"
        else:
            label = "correct" if parsed.value == Fraction(m["gold"]) else "incorrect"
        probe = (
            label if label != "unparseable" else (None if unparseable == "drop" else "incorrect")
        )
        rows.append(
            {
                "prompt_id": g["prompt_id"],
                "problem_id": m["problem_id"],
                "sample": m["sample"],
                "gold": m["gold"],
                "parsed": format_number(parsed.value),
                "parse_method": parsed.method,
                "label": label,
                "probe_label": probe,
                "finished": g["finished"],
                "response_tokens": g["response_tokens"],
            }
        )
    return pl.DataFrame(rows, schema=LABEL_SCHEMA)


def class_counts(labels: pl.DataFrame) -> dict[str, int]:
    """Traces per ``label`` (every label present, zeros included) and per probe class."""
    out = {k: int((labels["label"] == k).sum()) for k in LABELS}
    out["probe_correct"] = int((labels["probe_label"] == "correct").sum())
    out["probe_incorrect"] = int((labels["probe_label"] == "incorrect").sum())
    out["probe_dropped"] = int(labels["probe_label"].is_null().sum())
    return out


def write_labels(
    generations_path: str | Path,
    prompts_path: str | Path,
    labels_out: str | Path,
    summary_out: str | Path,
    unparseable: Literal["drop", "incorrect"] = "drop",
    last_number_fallback: bool = False,
) -> dict[str, Any]:
    """Stage: label every trace; write the labels parquet and a summary of the counts."""
    labels = label_traces(
        read_parquet(generations_path),
        read_parquet(prompts_path),
        unparseable,
        last_number_fallback,
    )
    write_parquet(labels, labels_out)
    summary = {
        "n_traces": labels.height,
        "n_problems": labels["problem_id"].n_unique(),
        "counts": class_counts(labels),
        "by_method": dict(sorted(labels.group_by("parse_method").len().iter_rows())),
        "n_unfinished": int((~labels["finished"]).sum()),
        "unparseable": unparseable,
        "last_number_fallback": last_number_fallback,
    }
    write_json(summary, summary_out)
    return summary


# --------------------------------------------------------------------------------------------
# 4. Trace collection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoppingRule:
    """Stop once both targets are reached (counted as the probe will see the classes)."""

    target_correct: int = 50
    target_incorrect: int = 50
    unparseable: Literal["drop", "incorrect"] = "drop"
    last_number_fallback: bool = False

    def __call__(self, prompts: pl.DataFrame):
        def stop_when(generations: pl.DataFrame) -> bool:
            c = class_counts(
                label_traces(generations, prompts, self.unparseable, self.last_number_fallback)
            )
            return (
                c["probe_correct"] >= self.target_correct
                and c["probe_incorrect"] >= self.target_incorrect
            )

        return stop_when


def collect_traces(
    prompts_path: str | Path,
    generations_path: str | Path,
    activations_path: str | Path,
    provenance_path: str | Path,
    model,
    sampling,
    capture,
    run,
    stopping: StoppingRule,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Stage: sample and capture traces in resumable shards until ``stopping`` holds.

    The attempt table already stops at ``max_attempts``; the rule is checked after every
    shard, so a run overshoots the targets by at most one shard (every collected trace is
    kept). Returns the generation summary plus the stopping rule.
    """
    from interpflow.generate import generate_and_capture

    prompts = read_parquet(prompts_path)
    summary = generate_and_capture(
        prompts_path,
        generations_path,
        activations_path,
        provenance_path,
        model=model,
        sampling=sampling,
        capture=capture,
        run=run,
        model_id=model_id,
        stop_when=stopping(prompts),
    )
    return summary | {"stopping": asdict(stopping)}


# --------------------------------------------------------------------------------------------
# 5. Probes and implicit-value directions
# --------------------------------------------------------------------------------------------

RESULT_COLUMNS = {
    "layer": pl.Int64,
    "aggregation": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_train": pl.Int64,
    "n_test": pl.Int64,
}
LOGIT_COLUMNS = {
    "layer": pl.Int64,
    "aggregation": pl.String,
    "prompt_id": pl.String,
    "problem_id": pl.String,
    "split": pl.String,
    "label": pl.String,
    "logit": pl.Float64,
}


def skip_reason(labels: pl.DataFrame) -> str | None:
    """Why no probe can be fit on these labels (a class or a second problem missing), or None."""
    c = class_counts(labels)
    missing = [k for k in ("correct", "incorrect") if c[f"probe_{k}"] == 0]
    if missing:
        return (
            f"no {' and no '.join(missing)} traces to train on "
            f"(counts: {c['correct']} correct, {c['incorrect']} incorrect, "
            f"{c['unparseable']} unparseable; {c['probe_dropped']} dropped from the probe)"
        )
    if labels.filter(pl.col("probe_label").is_not_null())["problem_id"].n_unique() < 2:
        return "all labelled traces come from one problem: a split grouped by problem is impossible"
    return None


def _direction(pipe) -> tuple[np.ndarray, float, float]:
    """Unit direction towards ``POSITIVE`` in raw activation space, its raw norm and intercept.

    The pipeline scores ``w·(x − μ)/σ + b`` for ``classes_[1]``; in raw space the weights are
    ``w/σ`` and the intercept ``b − Σ wμ/σ``. The sign is flipped when ``classes_[1]`` is not
    the positive class, so a larger projection always means "more likely correct".
    """
    scaler, clf = pipe.named_steps["scaler"], pipe.named_steps["clf"]
    w = clf.coef_[0] / scaler.scale_
    b = float(clf.intercept_[0] - (w * scaler.mean_).sum())
    sign = 1.0 if clf.classes_[1] == POSITIVE else -1.0
    w, b = sign * w, sign * b
    norm = float(np.linalg.norm(w))
    return (w / norm if norm > 0 else w), norm, b


def fit_tribunal_probes(
    activations_path: str | Path,
    labels: pl.DataFrame,
    layers: Sequence[int],
    aggregations: Sequence[str],
    out_dir: str | Path,
    test_size: float = 0.25,
    seed: int = 0,
    n_bootstrap: int = 1000,
    C: float = 1.0,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Stage: one logreg probe per layer × aggregation; directions, metrics, figure and tables.

    Writes into ``out_dir``: ``metrics.json`` (+ provenance), ``probe_results.png`` with its
    table ``probe_results.csv`` (:data:`RESULT_COLUMNS`: accuracy, AUROC, majority accuracy
    per layer × aggregation), ``probe_logits.parquet`` (:data:`LOGIT_COLUMNS`: the log-odds of
    "correct" of every trace, train and test), ``implicit_value_directions.safetensors``
    (``L{layer}.{aggregation}.{direction,mean_correct,mean_incorrect}``) and
    ``implicit_value_directions.json``. The split is drawn once, grouped by problem and
    stratified by the problem's majority label, and shared by every probe. Directions are the
    logistic-regression weights mapped to raw activation space (``coef / scaler.scale_``),
    unit-normalised and signed towards "correct"; class means are over the train traces.
    A single probe whose rows at its layer × position lost a class in train (e.g. empty
    responses have no ``last_response``) is recorded as skipped, the others go on.

    When a probe cannot be fit (a class has no trace, one problem only), every file is still
    written: metrics with ``status: "skipped"``, the ``reason``, the class counts and null
    scores; empty tables; empty directions; a figure that states the reason.
    """
    from safetensors.numpy import save_file
    from sklearn.base import clone

    from interpflow.figures import write_csv
    from interpflow.probes import (
        classification_metrics,
        group_split,
        load_probe_dataset,
        majority_baseline,
        make_logreg,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = {
        "model_id": model_id,
        "layers": [int(x) for x in layers],
        "aggregations": list(aggregations),
        "positive_class": POSITIVE,
        "counts": class_counts(labels),
        "test_size": test_size,
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "C": C,
    }
    reason = skip_reason(labels)
    records, logit_rows, tensors, directions, probes = [], [], {}, {}, {}
    if reason is None:
        lab = labels.filter(pl.col("probe_label").is_not_null())
        problem_of = dict(zip(lab["prompt_id"], lab["problem_id"]))
        train_idx, test_idx = group_split(
            lab["problem_id"].to_numpy(), lab["probe_label"].to_numpy(), test_size, seed
        )
        test_problems = set(lab["problem_id"].to_numpy()[test_idx].tolist())
        train_classes = set(lab["probe_label"].to_numpy()[train_idx].tolist())
        if train_classes != {"correct", "incorrect"}:
            reason = f"the split grouped by problem leaves only {sorted(train_classes)} in train"
    if reason is None:
        base["n_train_problems"] = lab["problem_id"].n_unique() - len(test_problems)
        base["n_test_problems"] = len(test_problems)
        for layer in layers:
            for agg in aggregations:
                ds = load_probe_dataset(activations_path, lab, "probe_label", int(layer), [agg])
                problems = np.array([problem_of[p] for p in ds.groups])
                is_test = np.isin(problems, list(test_problems))
                tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
                if np.unique(ds.y[tr]).size < 2 or te.size == 0:
                    # rows missing at this position (e.g. empty responses) emptied a side
                    probes[f"L{int(layer)}.{agg}"] = {
                        "layer": int(layer),
                        "aggregation": agg,
                        "skipped": "a class is absent from train, or test is empty, here",
                        "n_train": int(tr.size),
                        "n_test": int(te.size),
                    }
                    continue
                pipe = clone(make_logreg(seed, C=C)).fit(ds.X[tr], ds.y[tr])
                classes = pipe.classes_
                m = classification_metrics(
                    ds.y[te], pipe.predict_proba(ds.X[te]), classes, problems[te], n_bootstrap, seed
                )
                maj = majority_baseline(ds.y[tr], ds.y[te], problems[te], n_bootstrap, seed)
                direction, norm, intercept = _direction(pipe)
                logit = ds.X.astype(np.float64) @ (direction * norm) + intercept
                key = f"L{int(layer)}.{agg}"
                means = {c: ds.X[tr][ds.y[tr] == c].mean(axis=0) for c in ("correct", "incorrect")}
                tensors[f"{key}.direction"] = direction.astype(np.float32)
                tensors[f"{key}.mean_correct"] = means["correct"].astype(np.float32)
                tensors[f"{key}.mean_incorrect"] = means["incorrect"].astype(np.float32)
                directions.setdefault(str(int(layer)), {})[agg] = {
                    "direction": direction.astype(np.float32).tolist(),
                    "raw_weight_norm": norm,
                    "intercept": intercept,
                    "mean_correct": means["correct"].astype(np.float32).tolist(),
                    "mean_incorrect": means["incorrect"].astype(np.float32).tolist(),
                    "test_accuracy": m["accuracy"],
                    "test_auroc": m["auroc"],
                }
                probes[key] = {
                    "layer": int(layer),
                    "aggregation": agg,
                    "metrics": m,
                    "majority": maj,
                    "n_train": int(tr.size),
                    "n_test": int(te.size),
                }
                for metric, value, ci in (
                    ("accuracy", m["accuracy"], m["accuracy_ci"]),
                    ("auroc", m["auroc"], m["auroc_ci"]),
                    ("majority_accuracy", maj["accuracy"], maj["accuracy_ci"]),
                ):
                    records.append(
                        {
                            "layer": int(layer),
                            "aggregation": agg,
                            "metric": metric,
                            "value": value,
                            "ci_low": ci[0],
                            "ci_high": ci[1],
                            "n_train": int(tr.size),
                            "n_test": int(te.size),
                        }
                    )
                for j in range(ds.X.shape[0]):
                    logit_rows.append(
                        {
                            "layer": int(layer),
                            "aggregation": agg,
                            "prompt_id": ds.groups[j],
                            "problem_id": problems[j],
                            "split": "test" if is_test[j] else "train",
                            "label": ds.y[j],
                            "logit": float(logit[j]),
                        }
                    )

    table = pl.DataFrame(records, schema=RESULT_COLUMNS)
    logits = pl.DataFrame(logit_rows, schema=LOGIT_COLUMNS)
    status = {"status": "ok" if reason is None else "skipped", "reason": reason}
    write_csv(table, out_dir / "probe_results.csv")
    write_parquet(logits, out_dir / "probe_logits.parquet")
    plot_probe_results(table, logits, out_dir / "probe_results.png", reason)
    meta = {"model_id": str(model_id), "positive_class": POSITIVE, "status": status["status"]}
    with atomic_path(out_dir / "implicit_value_directions.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    write_json(
        base | status | {"directions": directions}, out_dir / "implicit_value_directions.json"
    )
    metrics = base | status | {"probes": probes if reason is None else None, "best": _best(probes)}
    write_json(metrics, out_dir / "metrics.json")
    write_provenance(
        out_dir / "metrics.json.provenance.json", stage="tribunal_probes", **base, **status
    )
    return metrics


def _best(probes: dict[str, Any]) -> dict[str, Any] | None:
    """The probe with the highest test accuracy, judged by seed 002's bar (accuracy > 0.70)
    and by whether its 95% CI clears the majority baseline."""
    fitted = {k: p for k, p in probes.items() if "metrics" in p}
    if not fitted:
        return None
    key, p = max(fitted.items(), key=lambda kv: (kv[1]["metrics"]["accuracy"], kv[0]))
    m, lo = p["metrics"], p["metrics"]["accuracy_ci"][0]
    return {
        "probe": key,
        "accuracy": m["accuracy"],
        "accuracy_ci": m["accuracy_ci"],
        "auroc": m["auroc"],
        "majority_accuracy": p["majority"]["accuracy"],
        "accuracy_above_0.70": m["accuracy"] > 0.70,
        "ci_low_above_majority": lo is not None and lo > p["majority"]["accuracy"],
        "note": "best of several probes chosen on the test set: optimistic",
    }


def plot_probe_results(
    table: pl.DataFrame, logits: pl.DataFrame, out_png: str | Path, reason: str | None
) -> Path:
    """Accuracy and AUROC by layer per aggregation (95% CI bands, majority dashed) and the
    test-set probe logits by true class per layer × aggregation. With ``reason`` set (no
    probe could be fit), a figure stating the reason."""
    from matplotlib.ticker import MaxNLocator

    from interpflow.figures import plt, save_png, sns

    if reason is not None:
        fig, ax = plt.subplots(figsize=(7, 2.5))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "No probe fitted:\n" + "\n".join(_wrap(reason, 80)),
            ha="center",
            va="center",
            wrap=True,
        )
    else:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
        aggs = table["aggregation"].unique(maintain_order=True).to_list()
        palette = dict(zip(aggs, sns.color_palette("tab10", len(aggs))))
        for ax, metric in zip(axes[:2], ("accuracy", "auroc")):
            for agg in aggs:
                sub = table.filter(
                    (pl.col("aggregation") == agg) & (pl.col("metric") == metric)
                ).sort("layer")
                x = sub["layer"].to_numpy()
                ax.plot(
                    x,
                    sub["value"].fill_null(np.nan).to_numpy(),
                    marker="o",
                    color=palette[agg],
                    label=agg,
                )
                lo, hi = (sub[c].fill_null(np.nan).to_numpy() for c in ("ci_low", "ci_high"))
                ax.fill_between(x, lo, hi, color=palette[agg], alpha=0.2, linewidth=0)
                if metric == "accuracy":
                    maj = table.filter(
                        (pl.col("aggregation") == agg) & (pl.col("metric") == "majority_accuracy")
                    ).sort("layer")
                    ax.plot(
                        x,
                        maj["value"].to_numpy(),
                        ls="--",
                        color=palette[agg],
                        alpha=0.7,
                        label=f"majority ({agg})",
                    )
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("layer")
            ax.set_ylabel(f"test {metric} (95% CI)")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        test = logits.filter(pl.col("split") == "test").with_columns(
            (
                pl.lit("L") + pl.col("layer").cast(pl.String) + pl.lit(" ") + pl.col("aggregation")
            ).alias("probe")
        )
        sns.boxplot(
            data=test.to_pandas(),
            x="probe",
            y="logit",
            hue="label",
            hue_order=["correct", "incorrect"],
            ax=axes[2],
        )
        axes[2].axhline(0, color="grey", lw=0.8, ls=":")
        axes[2].set_xlabel("")
        axes[2].set_ylabel("probe logit of 'correct' (test traces)")
        axes[2].tick_params(axis="x", rotation=60, labelsize="small")
        fig.suptitle("Implicit value probe: correct vs incorrect chains of thought")
    return save_png(fig, out_png, dpi=130)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)
