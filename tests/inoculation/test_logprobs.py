"""Unit tests: teacher forcing on the stub model (the logprobs stage's engine)."""

from __future__ import annotations

import numpy as np
import pytest


def test_teacher_forcing_batched_equals_unbatched(stub_dir):
    from interpflow.logprobs import self_perplexity, token_logprobs
    from interpflow.models import ModelSpec, chat_prompt, load_model

    model, tok = load_model(ModelSpec(str(stub_dir)))
    prefixes = [chat_prompt(tok, u) for u in ("hi", "a much longer question about the weather")]
    targets = ["hello there", "it rains"]
    batched = token_logprobs(model, tok, prefixes, targets, batch_size=2)
    single = [
        token_logprobs(model, tok, [p], [t], batch_size=1)[0] for p, t in zip(prefixes, targets)
    ]
    for (ids_b, lp_b), (ids_s, lp_s) in zip(batched, single):
        np.testing.assert_array_equal(ids_b, ids_s)
        np.testing.assert_allclose(lp_b, lp_s, atol=1e-4)
    # reference: one plain forward pass over the concatenated ids
    import torch

    p_ids = tok(prefixes[0], add_special_tokens=False)["input_ids"]
    t_ids = tok(targets[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p_ids + t_ids])).logits[0]
    ref = torch.log_softmax(logits.float(), -1)[len(p_ids) - 1 : -1].gather(
        1, torch.tensor(t_ids)[:, None]
    )[:, 0]
    np.testing.assert_allclose(batched[0][1], ref.numpy(), atol=1e-4)
    assert all(lp.max() <= 0 for _, lp in batched)
    sp = self_perplexity(model, tok, ["You are a clown.", "Be concise."], None)
    assert all(r > 0 and c > 0 and n > 0 for r, c, n in sp)


def test_logprob_stage_writes_train_neutral_and_one_traits_table(stub_dir, tmp_path):
    """One model load: the trait-only sets share one table (told apart by ``dataset``), every
    example under no prefix and each prompt fixed and mix, row ids unique across sets."""
    import polars as pl

    from interpflow.inoculation.logprobs import logprob_stage
    from interpflow.inoculation.study import InocPrompt
    from interpflow.models import ModelSpec

    def table(name, n):
        path = tmp_path / f"{name}.parquet"
        pl.DataFrame(
            {
                "example_id": [f"e{i}" for i in range(n)],  # the same ids in every set
                "instruction": [f"question {i}" for i in range(n)],
                "completion": [f"answer {i}" for i in range(n)],
                "source": "test",
            }
        ).write_parquet(path)
        return path

    reph = tmp_path / "reph.parquet"
    pl.DataFrame(
        {
            "prompt_key": ["clown", "clown", "sky"],
            "index": [0, 1, 0],
            "text": ["Be a clown.", "Clown!", "Blue sky."],
        }
    ).write_parquet(reph)
    prompts = {
        "clown": InocPrompt("clown", "Playful", "You are a clown."),
        "sky": InocPrompt("sky", "neutral", "The sky is blue."),
    }
    out = {k: tmp_path / f"out_{k}.parquet" for k in ("tr", "trt", "ne", "net", "ts", "tst", "sp")}
    summary = logprob_stage(
        train=table("train", 3),
        neutral=table("neutral", 2),
        traits={"trait_Playful": table("p", 2), "trait_French": table("f", 1)},
        rephrasings=reph,
        prompts=prompts,
        default_system=None,
        model=ModelSpec(str(stub_dir)),
        batch_size=4,
        out_train=out["tr"],
        out_train_tokens=out["trt"],
        out_neutral=out["ne"],
        out_neutral_tokens=out["net"],
        out_traits=out["ts"],
        out_traits_tokens=out["tst"],
        out_selfperp=out["sp"],
    )
    conditions = 1 + 2 * 2  # none + 2 prompts x (fixed, mix)
    assert pl.read_parquet(out["tr"]).height == 3 * conditions
    assert pl.read_parquet(out["ne"]).height == 2 * conditions
    traits = pl.read_parquet(out["ts"])
    assert dict(traits.group_by("dataset").len().rows()) == {
        "trait_Playful": 2 * conditions,
        "trait_French": 1 * conditions,
    }
    assert traits["row_id"].n_unique() == traits.height
    tokens = pl.read_parquet(out["tst"])
    assert tokens.height == traits["n_tokens"].sum() == summary["n_tokens"]["traits"]
    assert set(tokens["row_id"]) == set(traits["row_id"])
    assert pl.read_parquet(out["sp"])["prompt_key"].to_list() == ["clown", "sky"]


def test_the_token_table_is_streamed_batch_by_batch_and_equals_the_in_memory_result(
    stub_dir, tmp_path
):
    """score_completions writes one parquet row group per batch; the table is the one the
    in-memory teacher forcing gives, and each example's sum is its tokens' sum."""
    import polars as pl
    import pyarrow.parquet as pq

    from interpflow.logprobs import LogprobConfig, score_completions, token_logprobs
    from interpflow.models import ModelSpec, chat_prompt, load_model

    spec = ModelSpec(str(stub_dir))
    model, tok = load_model(spec)
    rows = pl.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(5)],
            "system": [None] * 5,
            "user": [f"question number {i}" for i in range(5)],
            "completion": ["short", "a longer answer here", "", "yes", "the end of it"],
        }
    )
    out_ex, out_tok = tmp_path / "ex.parquet", tmp_path / "tok.parquet"
    score_completions(rows, out_ex, out_tok, spec, LogprobConfig(batch_size=2), loaded=(model, tok))
    assert pq.ParquetFile(out_tok).num_row_groups == 3  # batches of 2, 2, 1
    tokens, examples = pl.read_parquet(out_tok), pl.read_parquet(out_ex)
    ref = token_logprobs(
        model, tok, [chat_prompt(tok, u) for u in rows["user"]], rows["completion"].to_list(), 5
    )
    for rid, (ids, lps), n, total in zip(
        rows["row_id"], ref, examples["n_tokens"], examples["logprob_sum"]
    ):
        got = tokens.filter(pl.col("row_id") == rid).sort("token_index")
        assert got["token_index"].to_list() == list(range(len(ids))) and n == len(ids)
        np.testing.assert_array_equal(got["token_id"].to_numpy(), ids)
        np.testing.assert_allclose(got["logprob"].to_numpy(), lps, atol=1e-4)
        assert total == pytest.approx(float(got["logprob"].cast(pl.Float64).sum()), abs=1e-3)


def test_subsample_is_seeded_in_order_and_the_same_for_every_condition():
    import polars as pl

    from interpflow.inoculation.logprobs import logprob_rows, subsample_examples
    from interpflow.inoculation.study import InocPrompt

    data = pl.DataFrame(
        {
            "example_id": [f"e{i:02d}" for i in range(50)],
            "instruction": [f"q{i}" for i in range(50)],
            "completion": [f"a{i}" for i in range(50)],
        }
    )
    assert subsample_examples(data, None).equals(data)
    assert subsample_examples(data, 80).equals(data)  # not smaller: all of it
    a, b = subsample_examples(data, 10, seed=3), subsample_examples(data, 10, seed=3)
    assert a.equals(b) and a.height == 10
    assert a["example_id"].to_list() == sorted(a["example_id"].to_list())  # original order
    assert not a.equals(subsample_examples(data, 10, seed=4))
    prompts = {"clown": InocPrompt("clown", "Playful", "You are a clown.")}
    rows = logprob_rows(a, "train", prompts, None, None, prefix_types=("fixed",))
    per_condition = rows.group_by("condition").agg(pl.col("example_id").sort())
    assert all(ids.to_list() == a["example_id"].to_list() for ids in per_condition["example_id"])
