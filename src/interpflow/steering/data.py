"""Stage ``data``: the base model answers the question pool under each persona.

Two SFT tables, one per branch (θ⁺ from the positive personas, θ⁻ from the negative ones),
with ``system`` null, ``user`` (the question) and ``assistant`` (the answer) for
:func:`interpflow.adapters.train_adapter`, plus provenance columns (``persona``,
``question_idx``, ``sample``, ``finished``). The persona is *not* in the training rows: the
adapter has to absorb it. Answers come from the shared loop
:func:`interpflow.generate.generate_answers`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from interpflow.artifacts import write_parquet, write_provenance
from interpflow.generate import AnswerConfig, generate_answers
from interpflow.models import ModelSpec, load_model
from interpflow.steering.common import load_personas, load_questions

DATA_SCHEMA = {
    "system": pl.String,
    "user": pl.String,
    "assistant": pl.String,
    "persona": pl.String,
    "question_idx": pl.Int32,
    "sample": pl.Int32,
    "finished": pl.Boolean,
}


@dataclass(frozen=True)
class PersonaDataConfig(AnswerConfig):
    """Config key ``data``: how answers are sampled (:class:`AnswerConfig`) and how many.

    Seed 004's recipe: 10 samples per (question, persona), 256 new tokens.
    """

    n_questions: int | None = None  # None = the whole pool
    samples_per_pair: int = 10  # responses per (question, persona)


def _branch_seed(cfg: PersonaDataConfig, branch: int) -> int:
    """Sampling seed of one branch (the batch starting at prompt i adds i)."""
    return cfg.seed * 1_000_003 + branch * 10_007


def build_persona_data(
    *,
    model: ModelSpec,
    personas: str | Path,
    questions: str | Path,
    out_pos: str | Path,
    out_neg: str | Path,
    config: PersonaDataConfig,
    threads: int | None = None,
) -> dict:
    """Base-model answers under each persona: one SFT table per branch (+ provenance beside
    ``out_pos``). Returns the row count of each branch."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    pos, neg = load_personas(personas)
    pool = load_questions(questions, config.n_questions)
    lm, tok = load_model(model)
    summary = {}
    for b, (branch, prompts, out) in enumerate((("pos", pos, out_pos), ("neg", neg, out_neg))):
        jobs = [
            (qi, pi, s)
            for qi in range(len(pool))
            for pi in range(len(prompts))
            for s in range(config.samples_per_pair)
        ]
        answers = generate_answers(
            model=lm,
            tokenizer=tok,
            prompts=[(prompts[pi], pool[qi]) for qi, pi, _ in jobs],
            config=config,
            seed=_branch_seed(config, b),
        )
        rows = [
            {
                "system": None,
                "user": pool[qi],
                "assistant": text,
                "persona": prompts[pi],
                "question_idx": qi,
                "sample": s,
                "finished": fin,
            }
            for (qi, pi, s), text, fin in zip(jobs, *answers, strict=True)
        ]
        df = pl.DataFrame(rows, schema=DATA_SCHEMA)
        write_parquet(df, out)
        summary[branch] = df.height
    write_provenance(
        Path(out_pos).with_name(Path(out_pos).name + ".provenance.json"),
        model=asdict(model),
        config=asdict(config),
        personas=str(personas),
        questions=str(questions),
        rows=summary,
    )
    return summary
