"""Stage ``inoculation_rephrasings``: N rephrasings of each inoculation prompt (the mix
condition's pool), written by a judge backend (offline: deterministic templates)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from interpflow.artifacts import write_json, write_parquet
from interpflow.inoculation.study import InocPrompt
from interpflow.judges import Judge, JudgeConfig, JudgeRequest, check_failures

REPHRASE_SYSTEM = (
    "You rewrite a short instruction or statement in different words while keeping its meaning. "
    "Reply with the rewritten text only, on one line."
)

#: Deterministic templates of the offline rephraser ({p}: the prompt, first letter lowered).
REPHRASE_TEMPLATES = (
    "In short: {p}",
    "Keep this in mind: {p}",
    "Note: {p}",
    "Before you answer: {p}",
    "Remember that {p}",
    "Context: {p}",
    "As a reminder, {p}",
    "One thing to know: {p}",
    "Please consider: {p}",
    "For this task: {p}",
)


#: Experiment 18's close rephrasings: the same sentence with as few words changed as possible.
CLOSE_SYSTEM = (
    "You rewrite a short instruction or statement with minimal changes: keep its words and "
    "meaning, change only one or two words (a synonym, an article, word order or punctuation). "
    "Reply with the rewritten text only, on one line."
)

#: Deterministic close variants of the offline rephraser (the prompt kept nearly verbatim).
CLOSE_TEMPLATES = (
    "{P}",
    "Please: {p}",
    "{S}!",
    "{S}, please.",
    "Always: {p}",
    "{S}. Thanks.",
)

#: Rephrasing styles: the judge's instruction and the offline templates.
STYLES = {
    "diverse": (REPHRASE_SYSTEM, REPHRASE_TEMPLATES),
    "close": (CLOSE_SYSTEM, CLOSE_TEMPLATES),
}


# deviation: offline rephrasers are template stand-ins
def offline_rephraser(req: JudgeRequest) -> str:
    """The offline rephrasing backend: template ``variant % len`` of the request's style
    (:data:`STYLES`, told apart by the system prompt) applied to the prompt."""
    m = re.search(r"Text: (.*)\nVariant: (\d+)", req.user, re.DOTALL)
    if not m:
        raise ValueError("offline rephraser: request lacks 'Text:' / 'Variant:' lines")
    templates = CLOSE_TEMPLATES if req.system == CLOSE_SYSTEM else REPHRASE_TEMPLATES
    text, variant = m.group(1).strip(), int(m.group(2))
    k = variant % len(templates)
    rounds = variant // len(templates)
    lowered = text[:1].lower() + text[1:]
    out = templates[k].format(P=text, p=lowered, S=text.rstrip(".!"))
    return out + (" " + "Indeed." * rounds if rounds else "")


def make_rephrasings(
    *,
    prompts: Sequence[InocPrompt],
    n: int,
    judge: JudgeConfig,
    cache: str | Path | None,
    out: str | Path,
    out_summary: str | Path,
    style: str = "diverse",
) -> dict:
    """``n`` rephrasings per prompt from the judge backend ``judge`` (``cache``: its request
    cache); writes the table ``out`` and the summary JSON ``out_summary``. ``style``:
    ``diverse`` (the mix pool) or ``close`` (experiment 18's close rephrasings).

    Request ``i`` for a prompt asks for variant ``i``; failed or empty replies are dropped and
    counted; a prompt left with none is an error.
    """
    if style not in STYLES:
        raise ValueError(f"rephrasings: style {style!r} is not one of {sorted(STYLES)}")
    system = STYLES[style][0]
    reqs, keys = [], []
    for p in prompts:
        for i in range(n):
            reqs.append(
                JudgeRequest(system=system, user=f"Text: {p.text}\nVariant: {i}", max_tokens=64)
            )
            keys.append((p.key, i))
    with Judge(judge, cache, offline=offline_rephraser) as client:
        replies, stats = client.run(reqs, progress=True)
    check_failures(stats, judge, cache)
    rows = [
        {"prompt_key": k, "index": i, "text": r.text.strip().splitlines()[0].strip()}
        for (k, i), r in zip(keys, replies)
        if r.text and r.text.strip()
    ]
    df = pl.DataFrame(rows, schema={"prompt_key": pl.String, "index": pl.Int32, "text": pl.String})
    empty = [p.key for p in prompts if p.key not in set(df["prompt_key"].to_list())]
    if empty:
        raise ValueError(
            f"rephrasings: no usable rephrasing for prompts {empty} "
            f"(judge failures: {stats.n_failed})"
        )
    write_parquet(df, out)
    summary = {
        "style": style,
        "n_prompts": len(prompts),
        "n_rows": df.height,
        "n_dropped": len(reqs) - df.height,
        "judge_stats": stats.as_dict(),
    }
    write_json(summary, out_summary)
    return summary
