"""The deception verbalizer stage (interpflow.deception.verbalize): one text per activation
row at the probe layer, graded by the label judge."""

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interpflow.deception.verbalize import verbalize_activations
from interpflow.judges import JudgeConfig

CLASSES = ["normal", "eval_aware", "deceptive"]


def test_verbalizer_at_one_layer(generations, tmp_path):
    d = 4
    rows = [
        (p, layer, pos)
        for p in "abcd"
        for layer in (1, 2)
        for pos in ("last_prompt", "response[0]")
    ]
    table = pa.table(
        {
            "prompt_id": [r[0] for r in rows],
            "layer": pa.array([r[1] for r in rows], pa.int16()),
            "position": [r[2] for r in rows],
            "token_index": pa.array([0] * len(rows), pa.int32()),
            "activation": pa.FixedSizeListArray.from_arrays(
                pa.array(np.zeros(len(rows) * d, np.float16)), d
            ),
        }
    )
    pq.write_table(table, tmp_path / "act.parquet")
    cfg = JudgeConfig(backend="offline")
    args = {
        "activations": tmp_path / "act.parquet",
        "generations": generations,
        "judge": cfg,
        "grader": cfg,
        "cache": tmp_path / "c.sqlite",
        "classes": CLASSES,
    }
    verbalize_activations(**args, nla=tmp_path / "nla.parquet", layer=2)
    nla = pl.read_parquet(tmp_path / "nla.parquet")
    assert nla.height == 8 and set(nla["layer"]) == {2}
    assert nla.filter(pl.col("prompt_id") == "b")["nla_label"].to_list() == ["deceptive"] * 2
    assert "response[0]" in nla["nla_text"][1]
    # the offline grader's confidence: its class's share of the keyword hits in the text
    # ("deceptive stance": 1 of 1 -> 1.0); "normal stance" hits none: a guess, 1/3 -> 0.33
    conf = dict(zip(nla["prompt_id"], nla["nla_confidence"]))
    assert (conf["b"], conf["a"]) == (1.0, 0.33)
    assert set(nla["nla_confidence_source"]) == {"stated"}
    with pytest.raises(ValueError, match="no rows at layer 7"):
        verbalize_activations(**args, nla=tmp_path / "x.parquet", layer=7)
    # the stage: the texts, then the category tables beside the labels stage's
    from interpflow.deception.labels import label_generations
    from interpflow.deception.verbalize import run_verbalize

    lab = tmp_path / "labels.parquet"
    label_generations(
        generations=generations,
        labels=lab,
        summary=tmp_path / "s.json",
        judge=cfg,
        cache=args["cache"],
        classes=CLASSES,
    )
    files = {"table_csv": tmp_path / "t.csv", "table_md": tmp_path / "t.md"}
    run_verbalize(**args, labels=lab, nla=tmp_path / "n2.parquet", **files)  # every layer
    table = pl.read_csv(files["table_csv"])
    verbal = table.filter(pl.col("table") == "verbalizer_label")
    assert verbal["total"].sum() == pl.read_parquet(tmp_path / "n2.parquet").height == 16
    assert verbal.filter(pl.col("category") == "deceptive")["deceptive"].to_list() == [4]


# --- the category x verbalizer-label table (issue 20 item 4, seed 000's discussion) -----------


def _label_files(tmp_path, nla_prompts):
    cats = {"p1": "deceptive", "p2": "deceptive", "p3": "deceptive", "p4": "eval_aware"}
    cats |= {"p5": "eval_aware", "p6": "normal"}
    judge = ["eval_aware", "eval_aware", None, "eval_aware", "normal", "normal"]
    pl.DataFrame(
        {"prompt_id": list(cats), "category": list(cats.values()), "judge_label": judge},
        schema_overrides={"judge_label": pl.String},
    ).write_parquet(tmp_path / "labels.parquet")
    texts = {  # two verbalizer texts for most prompts; None: the grader named no class
        "p1": ["eval_aware", "eval_aware"],
        "p2": ["eval_aware", "deceptive"],
        "p3": [None, "eval_aware"],
        "p4": ["eval_aware"],
        "p5": ["normal"],
        "p6": ["normal", "normal"],
    }
    rows = [(p, lab) for p in nla_prompts for lab in texts.get(p, ["normal"])]
    pl.DataFrame(
        {"prompt_id": [p for p, _ in rows], "nla_label": [lab for _, lab in rows]},
        schema_overrides={"nla_label": pl.String},
    ).write_parquet(tmp_path / "nla.parquet")


def test_category_tables_count_known_cells(tmp_path):
    """Rows = prompt category (class order), columns = label + unlabelled + total; the
    verbalizer table counts one per text, the judge table one per generation."""
    from interpflow.deception.verbalize import category_tables

    _label_files(tmp_path, ["p1", "p2", "p3", "p4", "p5", "p6"])
    out = category_tables(
        labels=tmp_path / "labels.parquet",
        nla=tmp_path / "nla.parquet",
        classes=CLASSES,
        out_csv=tmp_path / "t.csv",
        out_md=tmp_path / "t.md",
    )
    cols = ["table", "category", *CLASSES, "unlabelled", "total"]
    assert pl.read_csv(tmp_path / "t.csv").columns == cols
    assert (
        pl.read_csv(tmp_path / "t.csv").rows()
        == out.rows()
        == [
            ("verbalizer_label", "normal", 2, 0, 0, 0, 2),
            ("verbalizer_label", "eval_aware", 1, 1, 0, 0, 2),
            ("verbalizer_label", "deceptive", 0, 4, 1, 1, 6),
            ("judge_label", "normal", 1, 0, 0, 0, 1),
            ("judge_label", "eval_aware", 1, 1, 0, 0, 2),
            ("judge_label", "deceptive", 0, 2, 0, 1, 3),
        ]
    )
    md = (tmp_path / "t.md").read_text()
    assert "| deceptive | 0 (0%) | 4 (67%) | 1 (17%) | 1 (17%) | 6 |" in md
    assert md.index("per verbalizer text") < md.index("per generation")


def test_category_tables_name_a_prompt_without_a_category(tmp_path):
    from interpflow.deception.verbalize import category_tables

    _label_files(tmp_path, ["p1", "zz"])
    with pytest.raises(ValueError, match=r"prompts \['zz'\] are not in"):
        category_tables(
            labels=tmp_path / "labels.parquet",
            nla=tmp_path / "nla.parquet",
            classes=CLASSES,
            out_csv=tmp_path / "t.csv",
            out_md=tmp_path / "t.md",
        )
