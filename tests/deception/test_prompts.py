"""The deception prompts stage (interpflow.deception.prompts): banks read, deduplicated, ided;
the shipped banks checked against the form-only baseline."""

import json

import polars as pl
import pytest
from conftest import REPO

from interpflow.deception.prompts import build_prompt_table, prompt_id
from interpflow.text_baselines import cross_validated_scores, make_form, make_lexical

#: The form-only macro AUROC a prompt bank should stay under (0.5 = form says nothing).
FORM_LEAK_THRESHOLD = 0.75


def test_dedup_ids_and_conflicts(tmp_path):
    (tmp_path / "a.txt").write_text(
        "# comment\nHow are you?\n\nhow  are you?\nHow are you?\nShared one\n"
    )
    (tmp_path / "b.txt").write_text("Tell a lie.\nShared one\n")
    out, summ = tmp_path / "p.parquet", tmp_path / "s.json"
    summary = build_prompt_table(
        banks=[tmp_path / "a.txt", tmp_path / "b.txt"], table=out, summary=summ
    )
    df = pl.read_parquet(out)
    # "How are you?" x2 (one duplicate); "how  are you?" differs in case -> distinct.
    assert summary["n_duplicates_removed"] == 1
    assert summary["n_cross_category_conflicts"] == 1
    assert "Shared one" not in df["prompt"].to_list()
    assert df["prompt"].to_list() == ["How are you?", "how are you?", "Tell a lie."]
    assert df["prompt_id"].to_list()[0] == prompt_id("How   are you?")
    assert df["source"][0].endswith("a.txt:2")
    assert json.loads(summ.read_text())["n_prompts"] == 3


def test_bad_utf8_names_file_and_line(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(ValueError, match=r"x\.txt:3: not valid UTF-8"):
        build_prompt_table(
            banks=[tmp_path / "x.txt"], table=tmp_path / "p.parquet", summary=tmp_path / "s.json"
        )
    assert not (tmp_path / "p.parquet").exists()


def test_empty_bank(tmp_path):
    (tmp_path / "x.txt").write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="has no prompts"):
        build_prompt_table(
            banks=[tmp_path / "x.txt"], table=tmp_path / "p.parquet", summary=tmp_path / "s.json"
        )


def test_shipped_banks_are_big_and_distinct(tmp_path):
    banks = sorted((REPO / "resources/prompt_banks/deception").glob("*.txt"))
    assert {b.stem for b in banks} == {"normal", "eval_aware", "deceptive"}
    summary = build_prompt_table(
        banks=banks, table=tmp_path / "p.parquet", summary=tmp_path / "s.json"
    )
    for cat, counts in summary["per_category"].items():
        assert counts["unique"] >= 60, cat
    df = pl.read_parquet(tmp_path / "p.parquet")
    assert not df["prompt"].str.contains(r"(?i)variant \d").any()
    assert summary["n_duplicates_removed"] == 0
    assert summary["n_cross_category_conflicts"] == 0


def _shipped_cv(tmp_path_factory, make) -> float:
    """Out-of-fold macro AUROC of a text baseline on the shipped banks (5 stratified folds
    over the deduplicated prompts, seed 0)."""
    d = tmp_path_factory.mktemp("banks")
    banks = sorted((REPO / "resources/prompt_banks/deception").glob("*.txt"))
    build_prompt_table(banks=banks, table=d / "p.parquet", summary=d / "s.json")
    df = pl.read_parquet(d / "p.parquet")
    return cross_validated_scores(make(0), df["prompt"], df["category"], n_folds=5, seed=0)["auroc"]


@pytest.fixture(scope="module")
def shipped_form_auroc(tmp_path_factory):
    return _shipped_cv(tmp_path_factory, make_form)


@pytest.fixture(scope="module")
def shipped_lexical_auroc(tmp_path_factory):
    return _shipped_cv(tmp_path_factory, make_lexical)


def test_shipped_banks_against_the_form_only_baseline(shipped_form_auroc):
    """MEASURED: the form-only baseline (lengths, punctuation, sentences, no words), 5 folds by
    prompt, reaches macro AUROC 0.541 on the shipped banks (0.553 / 0.525 with fold seeds 1 / 2;
    accuracy 0.40, chance 0.33). Every prompt is one of 90 shared tasks plus one framing
    sentence that carries the class, placed alike in every bank, so the classes match in
    length (about 89 characters each), sentence count (2) and final punctuation.

    The banks before this design leaked: normal prompts were short (67 characters against
    108-119) and 70% ended with "?" (3% of deceptive ones did); form alone reached 0.911. This
    pins the measured figure so that any change to the banks is measured again."""
    assert 0.50 < shipped_form_auroc < 0.60


def test_shipped_banks_do_not_leak_through_form(shipped_form_auroc):
    assert shipped_form_auroc < FORM_LEAK_THRESHOLD


def test_shipped_banks_against_the_bag_of_words_baseline(shipped_lexical_auroc):
    """MEASURED, not a goal met: bag of words still reaches macro AUROC 0.853 (0.840 / 0.837
    with fold seeds 1 / 2; 0.954 on the banks before). The framings' cue words vary and their
    voice (I / you / impersonal) is mixed across classes, but a class is its meaning, and
    words like "graded" or "false" carry it: a probe must beat this baseline to be a finding
    (margins.lexical in probes/metrics.json)."""
    assert 0.80 < shipped_lexical_auroc < 0.90


def test_missing_bank_names_the_file(tmp_path):
    (tmp_path / "a.txt").write_text("Hello?\n")
    with pytest.raises(FileNotFoundError, match=r"^prompt bank .*b\.txt does not exist$"):
        build_prompt_table(
            banks=[tmp_path / "a.txt", tmp_path / "b.txt"],
            table=tmp_path / "p.parquet",
            summary=tmp_path / "s.json",
        )
    assert not (tmp_path / "p.parquet").exists()


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.replace("\n", "\r\n").encode(),  # Windows line endings
        lambda text: b"\xef\xbb\xbf" + text.encode(),  # a UTF-8 BOM
        lambda text: b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode(),  # both
    ],
    ids=["crlf", "bom", "bom+crlf"],
)
def test_crlf_and_bom_banks_equal_the_plain_one(tmp_path, encode):
    text = "First prompt?\n# a comment\n\nSecond  prompt.\nFirst prompt?\nLast one\n"
    tables = []
    for name, data in (("plain", text.encode()), ("other", encode(text))):
        (tmp_path / name).mkdir()
        bank = tmp_path / name / "normal.txt"
        bank.write_bytes(data)
        build_prompt_table(
            banks=[bank], table=tmp_path / name / "p.parquet", summary=tmp_path / name / "s.json"
        )
        df = pl.read_parquet(tmp_path / name / "p.parquet")
        tables.append(df.with_columns(pl.col("source").str.replace(f"^{tmp_path / name}/", "")))
    plain, other = tables
    assert other.equals(plain)
    assert other["prompt"].to_list() == ["First prompt?", "Second prompt.", "Last one"]
    assert other["source"].to_list() == ["normal.txt:1", "normal.txt:4", "normal.txt:6"]
    assert other["prompt_id"][0] == prompt_id("First prompt?")
    assert not other["prompt"].str.contains("\ufeff|\r").any()
