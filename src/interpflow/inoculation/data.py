"""Stage ``inoculation_data``: one data table (the SFT set, a trait-only control set or the
neutral controls), from an external JSONL or written by the base model (datagen)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from interpflow.artifacts import provenance_path, stable_hash, write_parquet, write_provenance
from interpflow.generate import AnswerConfig
from interpflow.inoculation.common import DATA_SCHEMA, read_jsonl, read_lines


@dataclass(frozen=True)
class DatagenConfig(AnswerConfig):
    """How the base model answers the training instructions (``inoculation.datagen``):
    :class:`interpflow.generate.AnswerConfig` under a system prompt."""

    max_new_tokens: int = 512
    system_prompt: str = "Give a French and playful answer to the following:"
    """Datagen system prompt (a trait-only set uses its trait's ``datagen_system_prompt``)."""
    completion_template: str = "{completion}"
    """Format string each sampled answer is put into (``{completion}``: the answer), for a
    style the base model cannot be prompted into, e.g. ``"Ahoy! {completion}"`` (a trait-only
    set uses its trait's ``completion_template``); the default leaves answers unchanged."""

    def __post_init__(self) -> None:
        from interpflow.inoculation.study import check_template

        check_template(self.completion_template, "inoculation.datagen.completion_template")


def make_dataset(
    *,
    dataset: str,
    out: str | Path,
    external_jsonl: str | Path | None = None,
    instructions: str | Path | None = None,
    n: int | None = None,
    datagen: DatagenConfig | None = None,
    model=None,
    threads: int | None = None,
) -> dict:
    """Write data table ``out``: the first ``n`` examples of an external JSONL (off-policy
    data, or shipped controls), or ``model`` (a :class:`ModelSpec`) answering the first ``n``
    lines of the instruction bank ``instructions`` under ``datagen`` through
    :func:`interpflow.generate.generate_answers` (a provenance sidecar beside ``out`` records
    how; the sampling seed mixes ``datagen.seed`` with the dataset name)."""
    if external_jsonl is not None:
        df = read_jsonl(external_jsonl, n)
        write_parquet(df, out)
        return {"dataset": dataset, "source": str(external_jsonl), "n": df.height}
    import torch

    from interpflow.generate import generate_answers
    from interpflow.models import load_model

    if datagen is None or model is None or instructions is None:
        raise ValueError(
            "datagen needs instructions, a DatagenConfig and a model (or an external JSONL)"
        )
    lines = read_lines(instructions, n, "instruction bank")
    if threads:
        torch.set_num_threads(threads)
    lm, tok = load_model(model)
    answers = generate_answers(
        model=lm,
        tokenizer=tok,
        prompts=[(datagen.system_prompt, i) for i in lines],
        config=datagen,
        seed=int(stable_hash([datagen.seed, dataset], 8), 16) % (2**31 - 1),
    )
    df = pl.DataFrame(
        {
            "example_id": [f"{dataset}-{i:05d}" for i in range(len(lines))],
            "instruction": lines,
            "completion": [datagen.completion_template.format(completion=t) for t in answers.texts],
            "source": ["datagen"] * len(lines),
        },
        schema=DATA_SCHEMA,
    )
    write_parquet(df, out)
    write_provenance(
        provenance_path(out),
        dataset=dataset,
        model=asdict(model),
        datagen=asdict(datagen),
        n_finished=sum(answers.finished),
    )
    return {
        "dataset": dataset,
        "source": "datagen",
        "n": df.height,
        "n_finished": sum(answers.finished),
    }
