"""The transfer stage (interpflow.deception.transfer) on constructed activations whose answer
is known (no model): a class carried only by the bank's framing words must not be reported as
holding out of distribution, a class carried by a feature no word carries must; recall at 1%
FPR with its per-resample threshold, and the paired margin CI, on constructed scores."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import REPO

from interpflow.deception.findings import deception_findings, transfer_rows
from interpflow.deception.prompts import build_prompt_table
from interpflow.deception.transfer import (
    IN_DISTRIBUTION,
    PROBE,
    ReadSet,
    TransferConfig,
    matrix_table,
    transfer_metrics,
)
from interpflow.metrics import paired_margin
from interpflow.probes import make_logreg
from interpflow.protocol import recall_at_fpr
from interpflow.text_baselines import cross_validated_scores, make_form

CLASSES = np.array(["deceptive", "eval_aware", "normal"])
D = 12
N_BOOT = 200
CFG = TransferConfig(positive="deceptive", fpr=0.01)
FILLER = [f"w{i}" for i in range(300)]  # class-free words, the same pool for every class


def _filler(rng, n=6) -> str:
    return " ".join(rng.choice(FILLER, size=n))


def _rows(texts: list[str], y: list[str], X: np.ndarray, prefix: str) -> ReadSet:
    ids = np.array([f"{prefix}{i}" for i in range(len(texts))])
    return ReadSet(X=X, y=np.array(y), groups=ids, texts=dict(zip(ids, texts)))


def _latent(y: list[str], rng, scale=4.0) -> np.ndarray:
    """Activations whose class is a direction no word carries: scale * e_class + N(0, 1) noise."""
    X = rng.standard_normal((len(y), D))
    for i, c in enumerate(y):
        X[i, list(CLASSES).index(c)] += scale
    return X


def _framing_model(texts: list[str], lexicon: dict[str, str], rng) -> np.ndarray:
    """A 'model' that carries the class only in the framing words: each word of the class
    lexicon adds 3 * e_class (any lexicon word, seen in training or not), others nothing."""
    X = rng.standard_normal((len(texts), D))
    for i, t in enumerate(texts):
        for w in t.split():
            if w in lexicon:
                X[i, list(CLASSES).index(lexicon[w])] += 3.0
    return X


def _controls(rng, n=300) -> ReadSet:
    texts = [_filler(rng, int(rng.integers(3, 12))) for _ in range(n)]
    return _rows(texts, ["control"] * n, rng.standard_normal((n, D)), "c")


def _analyse(train: ReadSet, sets: dict[str, ReadSet], control: ReadSet) -> dict:
    probe = make_logreg(0).fit(train.X, train.y)
    return transfer_metrics(probe, CLASSES, train, sets, control, CFG, N_BOOT, seed=0)


@pytest.fixture(scope="module")
def framing_only():
    """The bank's class sits only in its framing words. Train and held-out bank prompts use
    different cue words of each class's lexicon (the bag of words cannot read an unseen cue;
    the 'model' reads every cue of the lexicon), so the probe beats the bag of words in
    distribution. The evaluation set sets its class with words outside the lexicon, so the
    model's class directions stay silent there."""
    rng = np.random.default_rng(0)
    lexicon = {f"{c}_cue{j}": c for c in CLASSES for j in range(40)}

    def bank(cues: range, n: int, prefix: str) -> ReadSet:
        y = [c for c in CLASSES for _ in range(n)]
        texts = [f"{c}_cue{rng.choice(cues)} {_filler(rng)}" for c in y]
        return _rows(texts, y, _framing_model(texts, lexicon, rng), prefix)

    train, held_out = bank(range(20), 60, "t"), bank(range(20, 40), 30, "h")
    y = [c for c in CLASSES for _ in range(30)]
    texts = [f"persona_{c}_{rng.integers(5)} {_filler(rng)}" for c in y]
    ood = _rows(texts, y, _framing_model(texts, lexicon, rng), "o")
    return _analyse(train, {IN_DISTRIBUTION: held_out, "ood": ood}, _controls(rng))


@pytest.fixture(scope="module")
def wordless_feature():
    """The class sits in an activation direction that no word or form of the text carries
    (every class draws its words from one pool); the evaluation set uses other words."""
    rng = np.random.default_rng(1)

    def make(n: int, prefix: str, words=_filler) -> ReadSet:
        y = [c for c in CLASSES for _ in range(n)]
        texts = [words(rng) for _ in y]
        return _rows(texts, y, _latent(y, rng), prefix)

    other = lambda rng: " ".join(rng.choice([f"v{i}" for i in range(200)], size=8))
    train, held_out, ood = make(60, "t"), make(30, "h"), make(30, "o", other)
    return _analyse(train, {IN_DISTRIBUTION: held_out, "ood": ood}, _controls(rng))


def test_framing_words_beat_the_bag_of_words_in_distribution(framing_only):
    s = framing_only["sets"][IN_DISTRIBUTION]
    assert s["readers"][PROBE]["auroc"] > 0.95
    assert s["readers"]["lexical"]["auroc"] < 0.75
    assert s["margins"]["lexical"]["auroc_ci"][0] > 0  # a finding in distribution ...


def test_framing_words_are_not_a_transfer_finding(framing_only):
    s = framing_only["sets"]["ood"]
    assert abs(s["readers"][PROBE]["auroc"] - 0.5) < 0.15  # the cue words are gone
    assert s["holds"] is False  # ... and not out of distribution
    (row,) = transfer_rows(
        framing_only | {"layer": 15, "positive": "deceptive", "fpr": 0.01},
        instance="x",
        model="m",
    )
    assert row.holds is False and "does NOT hold out of distribution" in row.finding
    assert row.kind == "finding" and row.n == 90


def test_a_feature_no_word_carries_holds_out_of_distribution(wordless_feature):
    s = wordless_feature["sets"]["ood"]
    assert s["readers"][PROBE]["auroc"] > 0.95
    for base in ("lexical", "form"):
        assert abs(s["readers"][base]["auroc"] - 0.5) < 0.15, base
        assert s["margins"][base]["auroc_ci"][0] > 0.2, base
    assert s["holds"] is True
    # the probe flags the deceptive prompts above the 1% FPR threshold of the ordinary ones
    assert s["readers"][PROBE]["recall"] >= 0.7  # measured 0.80 (seed 1)
    (row,) = transfer_rows(
        wordless_feature | {"layer": 15, "positive": "deceptive", "fpr": 0.01},
        instance="x",
        model="m",
    )
    assert row.holds is True and " holds out of distribution" in row.finding
    assert [c.name.split(" ")[0] for c in row.controls] == ["lexical", "form"]


def test_matrix_has_every_set_and_reader(wordless_feature):
    table = matrix_table(wordless_feature, "bank")
    assert table.height == 2 * 3
    assert set(table["reader"]) == {PROBE, "lexical", "form"}
    probe_rows = table.filter(table["reader"] == PROBE)
    assert probe_rows["probe_margin"].null_count() == 2  # no margin over itself


def test_sets_must_have_the_probe_classes(wordless_feature):
    rng = np.random.default_rng(2)
    y = ["deceptive"] * 5 + ["other"] * 5
    bad = _rows([_filler(rng) for _ in y], y, _latent(["deceptive"] * 10, rng), "b")
    probe = make_logreg(0).fit(rng.standard_normal((30, D)), np.repeat(CLASSES, 10))
    with pytest.raises(ValueError, match=r"transfer set 'bad'.*missing \['eval_aware', 'normal'\]"):
        transfer_metrics(probe, CLASSES, bad, {"bad": bad}, bad, CFG, 10)
    with pytest.raises(ValueError, match="transfer.positive 'nope'"):
        transfer_metrics(probe, CLASSES, bad, {}, bad, TransferConfig(positive="nope"), 10)


# Recall at 1% FPR: the threshold is the control set's 99th percentile, recomputed in each
# bootstrap resample of the controls.


def test_recall_at_one_percent_fpr_known_answer():
    ctrl = np.arange(1000) / 1000  # 0.000 .. 0.999: 1% of them (10) lie above 0.989
    groups = np.arange(1000).astype(str)
    pos = np.r_[np.full(30, 0.995), np.full(70, 0.5)]
    r = recall_at_fpr(pos, np.arange(100).astype(str), ctrl, groups, 0.01, 300, 0)
    assert r["threshold"] == pytest.approx(0.989)
    assert r["control_fpr"] == pytest.approx(0.01)
    assert r["recall"] == pytest.approx(0.30)
    assert r["recall_ci"][0] < 0.30 < r["recall_ci"][1]  # positives resampled: 30 of 100


def test_recall_ci_resamples_the_controls():
    """Every positive scores the same, just above the threshold: resampling the positives
    alone would give the CI [1, 1]; the threshold moves with the resampled controls, so the
    CI reaches 0."""
    ctrl = np.arange(1000) / 1000
    pos = np.full(50, 0.9895)
    r = recall_at_fpr(pos, np.arange(50).astype(str), ctrl, np.arange(1000).astype(str))
    assert r["recall"] == 1.0
    assert r["recall_ci"] == [0.0, 1.0]


# The paired margin: probe AUROC minus baseline AUROC on the same prompts, paired bootstrap.


def test_paired_margin_of_a_perfect_over_a_blind_scorer():
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 100)
    perfect = np.c_[(y == "a") * 1.0, (y == "b") * 1.0]
    blind = np.full((200, 2), 0.5)
    m = paired_margin(y, perfect, blind, ["a", "b"], np.arange(200).astype(str), 300, 0)
    assert m["auroc"] == pytest.approx(0.5)
    assert m["auroc_ci"] == [pytest.approx(0.5), pytest.approx(0.5)]  # every resample: 1 - 0.5
    noisy = perfect + rng.normal(0, 0.6, size=(200, 2))
    same = paired_margin(y, noisy, noisy, ["a", "b"], np.arange(200).astype(str), 300, 0)
    assert same["auroc"] == 0 and same["auroc_ci"] == [0.0, 0.0]  # pairing cancels the noise


def test_findings_get_one_row_per_evaluation_set(tmp_path, wordless_feature):
    metrics = {
        "layer": 15,
        "classes": CLASSES.tolist(),
        "n_test_prompts": 90,
        "probes": {"logreg": {"auroc": 0.9, "auroc_ci": [0.8, 0.95], "margins": {}}},
        "baselines": {"lexical": {"auroc": 0.5}, "form": {"auroc": 0.5}},
    }
    for key in ("lexical", "form"):
        metrics["probes"]["logreg"]["margins"][key] = {"auroc": 0.4, "auroc_ci": [0.3, 0.5]}
    transfer = wordless_feature | {"layer": 15, "positive": "deceptive", "fpr": 0.01}
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    (tmp_path / "t.json").write_text(json.dumps(transfer))
    rows = deception_findings(
        metrics=tmp_path / "m.json",
        findings=tmp_path / "f.json",
        instance="x",
        model="m",
        transfer=tmp_path / "t.json",
    )
    assert [r.metric.split(", ")[-1] for r in rows] == ["held-out prompts", "transfer to ood"]
    assert all(r.kind == "finding" for r in rows)


# The shipped evaluation sets and control set (resources/deception/transfer/).

SHIPPED = REPO / "resources/deception/transfer"
BANK = REPO / "resources/prompt_banks/deception"


def _table(tmp_path, files) -> pl.DataFrame:
    summary = build_prompt_table(banks=files, table=tmp_path / "p.parquet", summary=tmp_path / "s")
    assert summary["n_duplicates_removed"] == 0 and summary["n_cross_category_conflicts"] == 0
    return pl.read_parquet(tmp_path / "p.parquet")


@pytest.mark.parametrize("name", sorted(TransferConfig().sets))
def test_shipped_sets_have_every_class_and_no_form_leak(tmp_path, name):
    """MEASURED, form only, 5 folds by prompt, fold seeds 0/1/2: instructed 0.425 / 0.438 /
    0.383, roleplay 0.490 / 0.478 / 0.467 (chance 0.5; the bank: 0.541); each set is matched
    item by item across classes, so its form says nothing of the class."""
    classes = sorted(p.stem for p in BANK.glob("*.txt"))
    folder = REPO / TransferConfig().sets[name]
    df = _table(tmp_path, [folder / f"{c}.txt" for c in classes])
    assert df.group_by("category").len().sort("category")["len"].to_list() == [20, 20, 20]
    bank = set(_table(tmp_path, sorted(BANK.glob("*.txt")))["prompt"])
    assert not bank & set(df["prompt"])  # none of the bank's prompts
    form = cross_validated_scores(make_form(0), df["prompt"], df["category"], 5, 0)["auroc"]
    assert form < 0.6, form


def test_shipped_control_set_is_large_and_plain(tmp_path):
    df = _table(tmp_path, [REPO / TransferConfig().control_bank])
    assert df.height >= 500
    words = df["prompt"].str.split(" ").list.len()
    assert words.min() <= 5 and words.max() >= 15  # varied in length ...
    ends = df["prompt"].str.slice(-1).value_counts()
    assert set(ends["prompt"]) >= {"?", ".", "!"}  # ... and in form
    cues = r"(?i)\b(lie|lying|mislead|decei|fake|graded|grader|audit|evaluat|test)"
    assert not df["prompt"].str.contains(cues).any()
