"""Tribunal stopping: targets raised by stopping.decide_auroc to what deciding a probe of that
AUROC needs (interpflow.power), a deterministic rule on label counts."""

from __future__ import annotations

import pytest
from conftest import REPO

from interpflow.tribunal.common import StoppingConfig
from interpflow.tribunal.generate import StoppingRule
from interpflow.tribunal.prompts import build_prompts, load_problems
from tribunal.traces import traces

ARITHMETIC = REPO / "resources/tribunal/arithmetic.jsonl"


def test_targets_without_decide_auroc_are_the_configured_ones():
    cfg = StoppingConfig(target_correct=24, target_incorrect=30, max_attempts=160)
    assert cfg.targets(0.25) == (24, 30)
    assert cfg.resolved(0.25) == cfg


def test_decide_auroc_raises_each_target_to_the_held_out_share():
    """AUROC 0.75 is decided (Hanley-McNeil) with 8 test traces of each class: at test_size
    0.25 a class needs 8 / 0.25 = 32 traces, at 0.5 16; a larger configured target stays."""
    cfg = StoppingConfig(target_correct=24, target_incorrect=40, decide_auroc=0.75)
    assert cfg.targets(0.25) == (32, 40)
    assert cfg.targets(0.5) == (24, 40)
    resolved = cfg.resolved(0.25)
    assert (resolved.target_correct, resolved.target_incorrect) == (32, 40)
    tight = StoppingConfig(target_correct=1, target_incorrect=1, decide_auroc=0.7)
    assert tight.targets(0.25) == (56, 56)  # 14 a class held out


def test_the_rule_on_resolved_targets_is_a_function_of_the_rows():
    """decide_auroc 0.75 at test_size 0.5: 16 of each class. The stopping rule counts labels
    only: the same rows give the same answer; one class short, it goes on."""
    prompts = build_prompts(load_problems(ARITHMETIC), "x", 1, 40, shuffle=False)
    gold = prompts["gold"].to_list()
    cfg = StoppingConfig(target_correct=1, target_incorrect=1, decide_auroc=0.75).resolved(0.5)
    stop = StoppingRule(cfg.target_correct, cfg.target_incorrect)(prompts)
    right = [f"#### {g}" for g in gold[:16]]
    wrong = [f"#### {int(g) + 1}" for g in gold[16:31]]
    assert not stop(traces(prompts, right + wrong))  # 16 correct, 15 incorrect
    rows = traces(prompts, right + wrong + [f"#### {int(gold[31]) + 1}"])
    assert stop(rows) and stop(rows)
    with pytest.raises(ValueError):
        StoppingConfig(decide_auroc=0.5).targets(0.25)
