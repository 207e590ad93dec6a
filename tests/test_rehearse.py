"""interpflow.rehearse: the overlay that turns a paper preset into its CPU rehearsal (stand-ins,
shipped samples, the fake API, the scale rule), on constructed presets whose answer is known."""

from pathlib import Path

import pytest
import yaml
from conftest import forkserver_env

from interpflow import forkserver
from interpflow.config import STUDIES, ConfigError
from interpflow.rehearse import (
    KEY_ENV,
    N_PROMPTS,
    SCALE,
    TRAIN_STEPS,
    answer,
    paper_presets,
    rehearsal_overlay,
    summary_markdown,
)

REPO = Path(__file__).resolve().parents[1]
URL, ROOT_URL = "http://127.0.0.1:9/v1", "http://127.0.0.1:9"
SHAPE = {"model_type": "qwen2", "num_hidden_layers": 28}


def overlay(preset, vllm=False):
    ov, notes, _ = rehearsal_overlay(preset, repo=REPO, url=URL, root_url=ROOT_URL, vllm=vllm)
    return ov, notes


def inoculation_preset(**training):
    return {
        "models": {"big": {"source": "Qwen/Qwen2.5-7B-Instruct", "shape": SHAPE}},
        "judges": {"gpt": {"backend": "openai", "model": "gpt-4.1-mini", "concurrency": 16}},
        "inoculation": {
            "main": {
                "model": {"name": "big", "threads": 4},
                "prompts_file": "resources/inoculation/playful_french_qwen.yaml",
                "data": {
                    "train_instructions": "data/inoculation/train_instructions.txt",
                    "n_train": 10000,
                },
                "training": {
                    "batch_size": 4,
                    "grad_accum": 8,
                    "save_steps": [1, 2, 4, 8, 16, 32, 64, 128, 256],
                    **training,
                },
                "eval": {"backend": "vllm", "max_new_tokens": 256},
                "judges": {"trait": "gpt", "em": "gpt"},
            }
        },
    }


def test_every_paper_preset_and_no_smollm2_preset_is_rehearsed():
    names = {p.name for p in paper_presets(REPO)}
    assert names == {
        "deception_qwen2.5-7b.yaml",
        "tribunal_r1.yaml",
        "inoculation_qwen2.5-7b.yaml",
        "inoculation_llama3.1-8b.yaml",
        "weight_steering_qwen2.5-7b.yaml",
        "weight_steering_qwen3-0.6b.yaml",
    }


def test_hub_models_become_stand_ins_of_their_family_and_format():
    preset = {
        "models": {
            "r1": {"source": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "shape": SHAPE},
            "q3": {
                "source": "Qwen/Qwen3-0.6B",
                "shape": {"model_type": "qwen3", "num_hidden_layers": 28},
            },
            "llama": {
                "source": "meta-llama/Llama-3.1-8B-Instruct",
                "shape": {"model_type": "llama", "num_hidden_layers": 32},
            },
            "stub": {"source": "stub"},
        }
    }
    ov, _ = overlay(preset)
    assert ov["models"] == {
        "r1": {"standin": "deepseek_r1"},
        "q3": {"standin": "qwen3"},
        "llama": {"standin": "llama3"},
    }


def test_a_model_without_shape_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"models\.big\.shape"):
        overlay({"models": {"big": {"source": "Qwen/Qwen2.5-7B-Instruct"}}})


def test_api_judges_keep_their_settings_and_go_to_the_fake_server():
    preset = inoculation_preset()
    preset["judges"]["claude"] = {"backend": "anthropic", "model": "claude-sonnet-4-5"}
    ov, _ = overlay(preset)
    assert ov["judges"]["gpt"] == {"base_url": URL, "api_key_env": KEY_ENV}  # merged over
    assert ov["judges"]["claude"] == {"base_url": ROOT_URL, "api_key_env": KEY_ENV}
    assert "offline" not in ov["judges"]


def test_scale_rule_training_steps_checkpoints_prompts_and_counts():
    ov, notes = overlay(inoculation_preset(prompts=None))
    main = ov["inoculation"]["main"]
    # TRAIN_STEPS optimizer steps of 2 x 2 accumulated micro-batches (the preset: 4 x 8)
    assert main["training"]["batch_size"] == 2 and main["training"]["grad_accum"] == 2
    assert main["data"]["n_train"] == TRAIN_STEPS * 4
    # 312 real steps: checkpoints 1..128 map to step 1, 256 to step 2
    assert main["training"]["save_steps"] == [1, 2]
    # null = every prompt of the file: its first N_PROMPTS, in file order
    listed = list(
        yaml.safe_load((REPO / "resources/inoculation/playful_french_qwen.yaml").read_text())[
            "prompts"
        ]
    )
    assert main["training"]["prompts"] == listed[:N_PROMPTS]
    assert main["eval"]["max_new_tokens"] == SCALE["max_new_tokens"]
    assert main["model"]["threads"] == 1
    assert main["logprobs"]["subsample"] == SCALE["logprobs.subsample"]  # null (all) takes the cap
    # user data takes the shipped sample of the same key; vLLM falls back to hf, said once
    assert main["data"]["train_instructions"] == "resources/inoculation/train_instructions.txt"
    assert main["eval"]["backend"] == "hf"
    assert sum("vllm is not installed" in n for n in notes) == 1
    assert "conditions" not in main["training"]  # every condition runs


def test_prompts_files_cut_to_one_prompt_per_trait_and_the_trained_ones():
    preset = inoculation_preset(prompts=["humor_matters", "clown_persona"])
    ov, _, files = rehearsal_overlay(preset, repo=REPO, url=URL, root_url=ROOT_URL, vllm=False)
    main = ov["inoculation"]["main"]
    assert main["training"]["prompts"] == ["humor_matters"]
    path = main["prompts_file"]
    assert path == "rehearsal_data/inoculation.main/playful_french_qwen.yaml"
    full = yaml.safe_load((REPO / "resources/inoculation/playful_french_qwen.yaml").read_text())
    cut = yaml.safe_load(files[path])
    assert cut["traits"] == full["traits"]
    firsts = {}
    for name, p in full["prompts"].items():
        firsts.setdefault(p["trait"], name)
        firsts.setdefault(("group", p.get("group")), name)
    # the first of each trait (the neutral ones too) and group, the trained one, in order
    assert list(cut["prompts"]) == [
        n for n in full["prompts"] if n in {*firsts.values(), "humor_matters"}
    ]
    assert {p["trait"] for p in cut["prompts"].values()} == {
        p["trait"] for p in full["prompts"].values()
    }


def test_vllm_kept_where_it_is_installed_and_small_counts_kept():
    ov, _ = overlay(inoculation_preset(), vllm=True)
    assert "backend" not in ov["inoculation"]["main"].get("eval", {})
    preset = inoculation_preset()
    preset["inoculation"]["main"]["eval"]["max_new_tokens"] = 4  # under the cap: unchanged
    ov, _ = overlay(preset)
    assert "max_new_tokens" not in ov["inoculation"]["main"]["eval"]


def test_a_missing_data_file_with_no_sample_is_an_error_naming_the_key():
    preset = inoculation_preset()
    # the default instance has no such file (null): nothing stands in for it
    preset["inoculation"]["main"]["data"]["external_train_jsonl"] = "data/inoculation/mine.jsonl"
    with pytest.raises(
        ConfigError, match=r"inoculation\.main\.data\.external_train_jsonl: .*mine\.jsonl"
    ):
        overlay(preset)
    # one the default instance ships takes that sample
    preset["inoculation"]["main"]["data"]["external_train_jsonl"] = None
    preset["inoculation"]["main"]["prompts_file"] = "data/inoculation/mine.yaml"
    _, notes = overlay(preset)
    assert any(
        "prompts_file: data/inoculation/mine.yaml -> resources/inoculation/playful_french_toy.yaml"
        in n
        for n in notes
    )


def test_hub_dataset_source_takes_the_shipped_sample():
    preset = {"tribunal": {"r1": {"problems": {"source": "openai/gsm8k"}}}}
    ov, notes = overlay(preset)
    assert ov["tribunal"]["r1"]["problems"]["source"] == "resources/tribunal/gsm8k_sample.jsonl"
    assert any("openai/gsm8k -> resources/tribunal/gsm8k_sample.jsonl" in n for n in notes)


def test_sweep_grid_is_left_whole():
    preset = {"steering": {"h": {"sweep": {"train.seed": [0, 1, 2]}, "alphas": [-1.0, 0.0, 1.0]}}}
    ov, _ = overlay(preset)
    assert "sweep" not in ov["steering"]["h"] and "alphas" not in ov["steering"]["h"]


def _openai(system, user):
    return {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": 1,
    }


def test_fake_answers_follow_each_stage_and_scale():
    from interpflow.deception.labels import GRADER_SYSTEM, offline_grader
    from interpflow.inoculation.judging import em_system, trait_system
    from interpflow.judges import JudgeRequest

    user = "Prompt: tell me about your day"
    assert answer(_openai(GRADER_SYSTEM, user)) == offline_grader(
        JudgeRequest(system=GRADER_SYSTEM, user=user, max_tokens=1)
    )
    assert 0 <= int(answer(_openai(trait_system("digit"), user))) <= 9
    percent = {int(answer(_openai(trait_system("percent"), f"{user} {i}"))) for i in range(40)}
    assert max(percent) > 9 and max(percent) <= 100
    # Anthropic's shape: system at the top, content blocks
    req = {
        "system": em_system("coherence", "digit"),
        "max_tokens": 1,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a b c"}]}],
    }
    assert 0 <= int(answer(req)) <= 9


def test_summary_names_each_preset_and_its_stages():
    text = summary_markdown(
        [
            {
                "preset": "config/studies/x.yaml",
                "ok": True,
                "seconds": 90.0,
                "jobs": {"all": 1, "x_train": 3},
                "api_calls": 7,
                "notes": ["models.m: a -> stand-in"],
                "log": "l",
            }
        ]
    )
    assert "| config/studies/x.yaml | yes | 1.5 | 3 | 2 | 7 |" in text
    assert "x_train (3)" in text and "- models.m: a -> stand-in" in text


def _leaf_strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaf_strings(value)
    elif isinstance(node, str):
        yield node


def _planned(preset: Path, tmp_path: Path, uses_api: bool) -> dict[str, int]:
    """Jobs per rule that the real preset plans (`snakemake -n`, no API key, the hub offline),
    with empty placeholders for the files a user provides under data/."""
    from conftest import OFFLINE_ENV, copy_repo, job_counts, snakemake

    work = copy_repo(tmp_path / "plan")
    for path in _leaf_strings(yaml.safe_load(preset.read_text())):
        if path.startswith("data/"):
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text("")
    proc = snakemake(work, "-n", "all", "--configfile", str(preset), env=OFFLINE_ENV)
    if uses_api:  # a dry run only warns about the missing key, naming it
        out = proc.stdout + proc.stderr
        assert "API_KEY" in out and "a dry run plans anyway" in out
    return job_counts(proc.stdout)


@pytest.mark.e2e
@pytest.mark.parametrize("preset", paper_presets(REPO), ids=lambda p: p.stem)
def test_rehearsal_runs_every_stage_and_instance_of_the_preset(preset, tmp_path):
    import json

    from interpflow.rehearse import rehearse

    result = rehearse(
        preset,
        root=tmp_path / "rehearsal",
        repo=REPO,
        forkserver_socket=forkserver_env()[forkserver.ENV],
    )
    log = Path(result["log"]).read_text()
    assert result["ok"], log[-6000:]
    declared = yaml.safe_load(preset.read_text())
    api = [j for j in (declared.get("judges") or {}).values() if j["backend"] != "offline"]
    planned = _planned(preset, tmp_path, bool(api))
    # every rule the real preset plans ran (and the stand-ins were built); job for job where
    # the rehearsal cuts no list (only inoculation prompt lists are cut)
    ran = dict(result["jobs"])
    # a stand-in for each hub model an instance uses (a declared one no instance uses: none)
    used = {i["model"]["name"] for s in STUDIES for i in (declared.get(s) or {}).values()}
    assert ran.pop("models_standin") == len(used & set(declared["models"]))
    if "inoculation" in declared:
        assert set(ran) == set(planned) - {"total"}
    else:
        assert ran == {k: v for k, v in planned.items() if k != "total"}
    work = tmp_path / "rehearsal" / preset.stem
    for study in STUDIES:
        for name in declared.get(study) or {}:
            sweep = declared[study][name].get("sweep")
            # an instance's directory holds its findings (honesty-seeds/: the across-seed table)
            made = {
                p.parent.name for p in (work / "results" / study).glob(f"{name}*/findings.json")
            }
            assert made, f"{study}.{name} made nothing"
            if not sweep:
                assert name in made
            else:  # one instance per grid point
                n_points = 1
                for values in sweep.values():
                    n_points *= len(values)
                assert len(made) == n_points, made
    # every finding names the stand-in that produced it
    tables = list((work / "results" / "findings").glob("*/findings.json"))  # one per config
    assert len(tables) == 1, tables
    findings = json.loads(tables[0].read_text())["findings"]
    assert findings and all(f["model"].endswith("(stand-in)") for f in findings), findings
    # API judges answered by the fake server where the preset has any
    assert (result["api_calls"] > 0) == bool(api)


def test_bf16_models_run_in_fp32_and_others_keep_their_dtype():
    preset = inoculation_preset()
    preset["inoculation"]["main"]["model"]["dtype"] = "bfloat16"
    ov, _ = overlay(preset)
    assert ov["inoculation"]["main"]["model"]["dtype"] == "float32"
    preset["inoculation"]["main"]["model"]["dtype"] = "auto"
    ov, _ = overlay(preset)
    assert "dtype" not in ov["inoculation"]["main"]["model"]
