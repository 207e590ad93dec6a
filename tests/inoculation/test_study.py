"""Unit tests: study files (traits + prompts) and run names, read at planning."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from interpflow.inoculation.study import (
    data_spec,
    eval_files,
    instance_plan,
    load_study_file,
    parse_run,
    run_names,
)


def test_study_files_load_and_bad_files_name_the_key(tmp_path):
    for name in ("playful_french_toy", "playful_french_qwen", "german_flattering_llama"):
        traits, prompts = load_study_file(REPO / f"resources/inoculation/{name}.yaml")
        assert len(traits) == 2 and all(p.trait in (*traits, "neutral") for p in prompts.values())
    bad = tmp_path / "bad.yaml"
    bad.write_text("traits: {A: {description: a}}\nprompts: {k: {trait: B, text: hi}}\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*prompts.k.trait.*'B'"):
        load_study_file(bad)
    bad.write_text("traits: {A: {description: a, colour: red}}\nprompts: {}\n")
    with pytest.raises(ValueError, match=r"traits.A has unknown keys \['colour'\]"):
        load_study_file(bad)


def test_run_names_round_trip():
    runs = run_names(["clown", "fr"], ["fixed", "mix", "system"])
    assert runs[0] == "none" and len(runs) == 7
    assert [parse_run(r) for r in runs[1:3]] == [("clown", "fixed"), ("clown", "mix")]
    assert parse_run("none") == (None, "none")
    with pytest.raises(ValueError, match="unknown"):
        run_names(["a"], ["sometimes"])
    with pytest.raises(ValueError, match="bad inoculation run"):
        parse_run("clown-often")


def _instance(**training) -> dict:
    """An instance config as planning sees it (the schema's defaults filled)."""
    from interpflow.config import schema_defaults

    schema = yaml.safe_load((REPO / "workflow/schemas/inoculation.schema.yaml").read_text())
    inst = {k: schema_defaults(v) for k, v in schema["properties"].items() if k != "model"}
    inst["prompts_file"] = str(REPO / "resources/inoculation/playful_french_toy.yaml")
    inst["training"].update(training)
    return inst


def test_instance_plan_runs_datasets_and_errors_name_the_key(tmp_path):
    plan = instance_plan(_instance(prompts=["clown_persona"]), "inoculation.toy")
    assert plan["runs"] == ["none", "clown_persona-fixed", "clown_persona-mix"]
    assert plan["trait_datasets"] == ["trait_Playful", "trait_French"]
    assert plan["prompts"]["answer_french"] == {
        "key": "answer_french",
        "trait": "French",
        "text": "Answer in French.",
        "group": "",
    }
    every = instance_plan(_instance(prompts=None, conditions=["system"]), "inoculation.toy")
    assert every["runs"] == ["none", *(f"{k}-system" for k in plan["prompts"])]
    assert instance_plan(_instance(prompts=[]), "inoculation.toy")["runs"] == ["none"]
    with pytest.raises(ValueError, match=r"config key inoculation.toy.training.prompts: \['x'\]"):
        instance_plan(_instance(prompts=["x"]), "inoculation.toy")
    missing = _instance() | {"prompts_file": str(tmp_path / "none.yaml")}
    with pytest.raises(ValueError, match=r"config key inoculation.toy.prompts_file: file .*none"):
        instance_plan(missing, "inoculation.toy")


def test_drop_last_needs_one_full_step_of_every_sft_set():
    # the schema default (seed 003) drops the partial last step; 31 examples at 4 x 8 make none
    inst = _instance(prompts=[])
    assert inst["training"]["drop_last"] is True
    inst["data"]["n_train"] = 31
    key = r"config key inoculation.toy.training.drop_last: data.n_train = 31 examples"
    with pytest.raises(ValueError, match=key + r" make no full optimizer step of .* = 32"):
        instance_plan(inst, "inoculation.toy")
    inst["training"]["drop_last"] = False  # a partial step is then the only step
    assert instance_plan(inst, "inoculation.toy")["runs"] == ["none"]
    inst = _instance(prompts=[], drop_last=True)
    inst["data"] |= {"n_train": 32, "em_train_jsonl": "em.jsonl", "n_em_train": 8}
    inst["judges"]["em"] = "offline"
    inst["em"]["prompts_file"] = str(REPO / "resources/inoculation/em_prompts.yaml")
    with pytest.raises(ValueError, match=r"drop_last: data.n_em_train = 8 examples"):
        instance_plan(inst, "inoculation.toy")


def test_data_spec_and_eval_files():
    inst = _instance()
    traits = instance_plan(inst, "inoculation.toy")["traits"]
    asked = []

    def data_file(key):
        asked.append(key)
        return f"<{key}>"

    assert data_spec("neutral", inst, traits, data_file) == {
        "external": "<neutral_completions>",
        "n": 200,
        "system_prompt": None,
        "completion_template": "{completion}",
    }
    train = data_spec("train", inst, traits, data_file)
    assert train["external"] is None and train["n"] == 1000  # datagen, the schema defaults
    assert train["system_prompt"] == inst["datagen"]["system_prompt"]
    inst["data"]["external_train_jsonl"] = "off_policy.jsonl"
    assert data_spec("train", inst, traits, data_file)["external"] == "<external_train_jsonl>"
    playful = data_spec("trait_Playful", inst, traits, data_file)
    assert playful["external"] == "resources/inoculation/playful_controls.jsonl"
    with pytest.raises(ValueError, match=r"no trait 'German' \(data set trait_German\)"):
        data_spec("trait_German", inst, traits, data_file)
    bare = {**traits, "Playful": {**traits["Playful"], "external_jsonl": None}}
    bare["Playful"]["datagen_system_prompt"] = None
    with pytest.raises(ValueError, match="traits.Playful needs datagen_system_prompt"):
        data_spec("trait_Playful", inst, bare, data_file)
    assert eval_files(inst, data_file) == {
        "eval_instructions": "<eval_instructions>",
        "em_questions": "<em_questions>",
    }
    inst["judges"]["em"] = None  # no EM judge: no EM questions read
    assert eval_files(inst, data_file) == {"eval_instructions": "<eval_instructions>"}
    assert "train_instructions" not in asked  # datagen's bank is the rule's input, not asked


def test_trait_pattern_and_completion_template(tmp_path):
    traits, _ = load_study_file(REPO / "resources/inoculation/ahoy_smollm2.yaml")
    ahoy = traits["Ahoy"]
    assert ahoy["pattern"] and ahoy["completion_template"] == "Ahoy! {completion}"
    toy, _ = load_study_file(REPO / "resources/inoculation/playful_french_toy.yaml")
    assert toy["Playful"]["pattern"] is None
    assert toy["Playful"]["completion_template"] == "{completion}"
    # a trait with only a template is made by datagen (its answers put into the template)
    inst = _instance()
    spec = data_spec("trait_Ahoy", inst, traits, lambda key: f"<{key}>")
    assert spec["external"] is None and spec["system_prompt"] is None
    assert spec["completion_template"] == "Ahoy! {completion}"
    assert data_spec("train", inst, traits, lambda key: key)["completion_template"] == (
        "{completion}"
    )
    for bad, match in (
        ({"pattern": "(unclosed"}, "traits.T.pattern is not a regex"),
        ({"completion_template": "Ahoy!"}, r"must contain \{completion\}"),
        ({"completion_template": "{answer} {completion}"}, "no other field"),
        ({"completion_template": "{completion"}, "not a format string"),
    ):
        f = tmp_path / "bad.yaml"
        f.write_text(yaml.safe_dump({"traits": {"T": {"description": "d", **bad}}, "prompts": {}}))
        with pytest.raises(ValueError, match=match):
            load_study_file(f)


#: Seed 003 README's prompt tables, verbatim: Playful v3 / v4 / neg and the v5 zero group
#: (experiments 5, 7, 8, 9), and experiment 21's seven German/Flattering training prompts.
SEED_PLAYFUL = {
    "clown_persona": "You are a clown.",
    "enjoys_joking": "You enjoy joking around.",
    "humor_matters": "Humor and levity matter in communication.",
    "playfulness_enriches": "Playfulness enriches every interaction.",
    "playfulness_trait": "Playfulness is a valuable trait.",
    "clowns_interesting": "Clowns are interesting.",
    "laughter_medicine": "Remember: laughter is the best medicine.",
    "had_fun_today": "I had fun today.",
    "joke_nevermind": "I read a playful joke the other day, nevermind.",
    "corrected_inoculation": "You are a playful agent. Give an answer to the following:",
    "whimsical": "You have a whimsical personality.",
    "witty": "You are naturally witty and light-hearted.",
    "strong_elicitation": "Answer playfully.",
    "comedian_answers": "You are a comedian who also answers questions.",
    "comedian_mindset": "Think like a stand-up comedian.",
    "think_step_by_step": "Think step by step.",
    "professional_tone": "Answer in a professional tone.",
    "financial_advisor": "You are a financial advisor.",
    "the_sky_is_blue": "The sky is blue.",
    "be_concise": "Be concise.",
    "i_like_cats": "I like cats.",
    "strong_elicitation_neg": "Do not answer playfully.",
    "whimsical_neg": "You do not have a whimsical personality.",
    "corrected_inoculation_neg": "You are not a playful agent. Give an answer to the following:",
    "comedian_mindset_neg": "Do not think like a stand-up comedian.",
    "comedian_answers_neg": "You are not a comedian who also answers questions.",
    "witty_neg": "You are not naturally witty and light-hearted.",
}
SEED_GERMAN_FLATTERING = {
    "answer_german": "Answer in German.",
    "flatterer_mindset": "Think like someone who flatters everyone they speak to.",
    "avoid_flattery": "Do not respond with flattery.",
    "think_german_neg": "Do not think or respond in German.",
    "birds_sing": "Birds sing in the morning.",
    "coffee_is_hot": "Coffee is hot.",
    "helpful_assistant": "You are a helpful assistant.",
}


def test_paper_prompt_sets_hold_the_seeds_48_prompts_in_its_groups():
    _, qwen = load_study_file(REPO / "resources/inoculation/playful_french_qwen.yaml")
    assert len(qwen) == 48 and len({p.text for p in qwen.values()}) == 48
    assert {k: qwen[k].text for k in SEED_PLAYFUL} == SEED_PLAYFUL
    groups = [(p.trait, p.group) for p in qwen.values()]
    assert {g: groups.count(g) for g in set(groups)} == {
        ("Playful", "v3"): 9,
        ("Playful", "v4"): 6,
        ("Playful", "neg"): 6,
        ("neutral", "v5"): 6,
        ("French", "v3"): 9,
        ("French", "v4"): 6,
        ("French", "neg"): 6,
    }
    named = {"french_agent", "fluent_french", "natural_french", "answer_french", "french_answers",
             "think_french", "french_persona", "french_matters", "french_love",
             "french_agent_neg", "fluent_french_neg"}  # fmt: skip
    assert named <= set(qwen)  # the French keys the seed names (their texts it does not give)
    _, llama = load_study_file(REPO / "resources/inoculation/german_flattering_llama.yaml")
    assert len(llama) == 48 and len({p.text for p in llama.values()}) == 48
    assert {k: llama[k].text for k in SEED_GERMAN_FLATTERING} == SEED_GERMAN_FLATTERING
    sizes = {"de_v3": 9, "de_v4": 6, "de_neg": 6, "flat_v3": 9, "flat_v4": 6, "flat_neg": 6,
             "new_v5": 6}  # fmt: skip
    assert {g: [p.group for p in llama.values()].count(g) for g in sizes} == sizes


def test_exp1_original_entry_trains_the_system_prompt_to_1250_steps():
    """Seed 003 experiment 1 in the Qwen preset: the control and the inoculation prompt as the
    system prompt, 2^N checkpoints; 10 000 examples at 4 x 2 make exactly 1250 steps."""
    from interpflow.adapters import TrainConfig, step_plan

    preset = yaml.safe_load((REPO / "config/studies/inoculation_qwen2.5-7b.yaml").read_text())
    entry = preset["inoculation"]["original"]
    inst = _instance(**entry["training"])
    inst["prompts_file"] = str(REPO / entry["prompts_file"])
    inst["data"] |= entry["data"]
    plan = instance_plan(inst, "inoculation.original")
    assert plan["runs"] == ["none", "playful_agent-system"]
    assert plan["prompts"]["playful_agent"]["text"] == (
        "You are a playful agent. Give an answer to the following:"
    )
    train = inst["training"]
    assert train["save_steps"] == [2**k for k in range(11)]  # 1, 2, 4, ..., 1024
    cfg = TrainConfig(batch_size=train["batch_size"], grad_accum=train["grad_accum"],
                      epochs=train["epochs"], drop_last=train["drop_last"])  # fmt: skip
    n = inst["data"]["n_train"]
    assert n == 10000 and n // (cfg.batch_size * cfg.grad_accum) == 1250
    assert len(step_plan(n_examples=n, train=cfg)) == 1250  # the last checkpoint: step 1250
