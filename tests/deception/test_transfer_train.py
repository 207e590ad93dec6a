"""Train for transfer (interpflow.deception.transfer_train) on constructed activations whose
answer is known: each set carries the class on one shared direction and on a set-specific
nuisance direction whose sign flips between sets; the bank-only probe leans on the nuisance and
fails out of distribution, the leave-one-set-out pooled probe learns the shared direction and
holds. Every variant is read only on sets it was not trained on."""

from __future__ import annotations

import numpy as np
import pytest

from interpflow.deception.transfer import ReadSet, TrainVariant, TransferConfig
from interpflow.deception.transfer_train import (
    compare_to_reference,
    pool,
    prompt_means,
    stack_layers,
    train_variant,
    variant_layers,
    variant_positions,
    variants_table,
)

CLASSES = np.array(["deceptive", "normal"])
CFG = TransferConfig(positive="deceptive", fpr=0.05)
D = 8
FILLER = [f"w{i}" for i in range(300)]  # class-free words, the same pool for every class


def _set(prefix: str, n: int, nuisance_sign: float, rng) -> ReadSet:
    """n prompts, half deceptive: the class on e0 (shared, 1.5 per unit) and on e1 (the
    nuisance, 3 per unit, sign ``nuisance_sign``), N(0, 1) noise; class-free filler text."""
    y = np.array(["deceptive", "normal"] * (n // 2))
    sign = np.where(y == "deceptive", 1.0, -1.0)
    X = rng.standard_normal((n, D))
    X[:, 0] += 1.5 * sign
    X[:, 1] += 3.0 * sign * nuisance_sign
    ids = np.array([f"{prefix}/{i}" for i in range(n)])
    texts = {g: " ".join(rng.choice(FILLER, size=int(rng.integers(4, 12)))) for g in ids}
    return ReadSet(X=X, y=y, groups=ids, texts=texts)


@pytest.fixture(scope="module")
def constructed():
    rng = np.random.default_rng(0)
    bank = _set("bank", 200, +1.0, rng)
    sets = {"other": _set("other", 120, -1.0, rng), "third": _set("third", 120, -1.0, rng)}
    n = 300
    control = ReadSet(
        X=rng.standard_normal((n, D)),
        y=np.array(["control"] * n),
        groups=np.array([f"control/{i}" for i in range(n)]),
        texts={f"control/{i}": " ".join(rng.choice(FILLER, size=6)) for i in range(n)},
    )
    read, readings = {}, {}
    for name, pooled in (("bank", False), ("pooled", True)):
        read[name], readings[name] = train_variant(
            TrainVariant(pooled=pooled), bank, sets, control, CLASSES, CFG, 200, 0
        )
    out = {name: {"tests": tests} for name, tests in read.items()}
    compare_to_reference(out, readings, "bank", CLASSES, 200, 0)
    return read


def test_bank_only_probe_does_not_transfer(constructed):
    for test, s in constructed["bank"].items():
        assert s["train"] == ["bank"]
        assert s["readers"]["probe"]["auroc"] < 0.3, test  # it reads the flipped nuisance
        assert not s["holds"]
        assert s["margins"]["lexical"]["auroc_ci"][1] < 0


def test_pooled_probe_transfers_and_beats_the_text_baselines(constructed):
    for test, s in constructed["pooled"].items():
        assert test not in s["train"] and s["train"][0] == "bank"
        assert s["readers"]["probe"]["auroc"] > 0.9, test
        assert s["holds"]
        for base in ("lexical", "form"):
            assert s["margins"][base]["auroc_ci"][0] > 0.2


def test_pooled_beats_the_bank_only_probe_paired(constructed):
    """The paired margin of the pooled probe over the bank-only one, on the same held-out
    prompts: the one reads the shared direction (AUROC > 0.9), the other the flipped nuisance
    (< 0.3), so the margin is above 0.6 with its CI above 0.5; the reference has none."""
    for test, s in constructed["pooled"].items():
        m = s["over_reference"]
        assert m["reference"] == "bank" and m["n_prompts"] == 120
        assert m["auroc"] > 0.6 and m["auroc_ci"][0] > 0.5, test
        bank = constructed["bank"][test]["readers"]["probe"]["auroc"]
        assert m["auroc"] == pytest.approx(s["readers"]["probe"]["auroc"] - bank)
    assert all("over_reference" not in s for s in constructed["bank"].values())


def test_prompt_means_average_each_prompts_rows():
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]])
    ids, y, mean = prompt_means(proba, np.array(["a", "b", "a"]), np.array(["q", "p", "q"]))
    assert ids.tolist() == ["p", "q"] and y.tolist() == ["b", "a"]
    assert mean.tolist() == [[0.6, 0.4], [0.6, 0.4]]


def test_pooled_trains_on_every_set_but_the_one_read(constructed):
    assert constructed["pooled"]["other"]["train"] == ["bank", "third"]
    assert constructed["pooled"]["third"]["train"] == ["bank", "other"]
    assert constructed["pooled"]["other"]["n_train_prompts"] == 320


def test_table_holds_only_held_out_readings(constructed):
    variants = {
        name: {"layers": [2], "positions": ["last_prompt"], "tests": tests}
        for name, tests in constructed.items()
    } | {"response": {"layers": [2], "positions": [], "skipped": "not captured"}}
    table = variants_table(variants)
    assert table.height == 4  # 2 variants x 2 sets; the skipped variant has no row
    for row in table.iter_rows(named=True):
        assert row["test"] not in row["train"].split("+")
        assert row["holds"] == (row["variant"] == "pooled")
        assert row["margin_form_lo"] <= row["margin_form"] <= row["margin_form_hi"]
        assert (row["over_reference"] is None) == (row["variant"] == "bank")


def test_stack_layers_concatenates_aligned_rows():
    y, g = np.array(["a", "b"]), np.array(["p0", "p1"])
    one = ReadSet(X=np.array([[1.0], [2.0]]), y=y, groups=g, texts={})
    two = ReadSet(X=np.array([[3.0, 4.0], [5.0, 6.0]]), y=y, groups=g, texts={})
    assert stack_layers([one, two]).X.tolist() == [[1, 3, 4], [2, 5, 6]]
    shuffled = ReadSet(X=two.X, y=y, groups=g[::-1], texts={})
    with pytest.raises(ValueError, match="rows differ"):
        stack_layers([one, shuffled])
    pooled = pool([one, ReadSet(X=np.array([[7.0]]), y=y[:1], groups=np.array(["q"]), texts={})])
    assert pooled.X.ravel().tolist() == [1, 2, 7] and pooled.groups.tolist() == ["p0", "p1", "q"]


def test_variant_layers_and_positions():
    captured = ["last_prompt", "response[0]", "response[1]"]
    assert variant_layers(TrainVariant(), 15, [25, 5, 15]) == [15]
    assert variant_layers(TrainVariant(layers="captured"), 15, [25, 5, 15]) == [5, 15, 25]
    assert variant_layers(TrainVariant(layers=(5, 25)), 15, [5, 15, 25]) == [5, 25]
    with pytest.raises(ValueError, match="capture.layers"):
        variant_layers(TrainVariant(layers=(7,)), 15, [5, 15])
    assert variant_positions(TrainVariant(), None, captured) == captured
    assert variant_positions(TrainVariant(), ("last_prompt",), captured) == ["last_prompt"]
    assert variant_positions(TrainVariant(positions="response"), None, captured) == captured[1:]
    assert variant_positions(TrainVariant(positions="response"), None, ["last_prompt"]) == []
    with pytest.raises(ValueError, match="positions"):
        variant_positions(TrainVariant(positions="middle"), None, captured)
