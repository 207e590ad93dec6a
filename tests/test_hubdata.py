"""interpflow.hubdata: which parquet shards a hub dataset's split is, and their rows as JSONL
(the download itself needs the network: its parts are tested on local files)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interpflow.hubdata import hub_source_message, main, parquet_shards, write_jsonl

GSM8K = [
    ".gitattributes",
    "README.md",
    "main/test-00000-of-00001.parquet",
    "main/train-00000-of-00001.parquet",
    "socratic/test-00000-of-00001.parquet",
]


@pytest.mark.parametrize(
    "files, config, split, expected",
    [
        (GSM8K, "main", "test", ["main/test-00000-of-00001.parquet"]),
        (GSM8K, "socratic", "test", ["socratic/test-00000-of-00001.parquet"]),
        # the data/ layout, shards in order
        (
            [
                "data/train-00001-of-00002.parquet",
                "data/train-00000-of-00002.parquet",
                "data/test-00000-of-00001.parquet",
            ],
            None,
            "train",
            ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"],
        ),
        # the hub's parquet conversion branch
        (
            ["default/test/0000.parquet", "default/test/0001.parquet"],
            "default",
            "test",
            ["default/test/0000.parquet", "default/test/0001.parquet"],
        ),
        (GSM8K, "main", "validation", []),
    ],
)
def test_parquet_shards(files, config, split, expected):
    assert parquet_shards(files, config, split) == expected


def test_write_jsonl_keeps_every_row_in_shard_order(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "answer": ["#### 1", "#### 2"]}), a)
    pq.write_table(pa.table({"question": ["q3"], "answer": ["#### 3"]}), b)
    out = tmp_path / "data" / "gsm8k.jsonl"
    assert write_jsonl([a, b], out) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question"] for r in rows] == ["q1", "q2", "q3"]


def test_hub_id_message_names_the_key_the_command_and_the_file():
    msg = hub_source_message("openai/gsm8k", "main", "test", "tribunal.x.problems.source")
    assert (
        "python -m interpflow.hubdata openai/gsm8k --config main --split test --out "
        "data/tribunal/openai_gsm8k_test.jsonl" in msg
    )
    assert msg.endswith("set tribunal.x.problems.source to data/tribunal/openai_gsm8k_test.jsonl")


def test_help_names_the_module(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m interpflow.hubdata")
