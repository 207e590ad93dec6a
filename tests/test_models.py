"""Model names: a local path that does not exist fails before anything loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from interpflow.models import ModelSpec, check_model_path, is_local_path, load_model, load_tokenizer


@pytest.mark.parametrize(
    "name, local",
    [
        ("Qwen/Qwen2.5-7B-Instruct", False),
        ("gpt2", False),
        ("./models/qwen", True),
        ("../qwen", True),
        ("/scratch/models/qwen", True),
        ("results/models/stub", True),
    ],
)
def test_local_path_or_hub_id(name, local):
    assert is_local_path(name) is local


def test_existing_directory_and_hub_ids_pass(tmp_path):
    check_model_path(str(tmp_path))
    check_model_path("Qwen/Qwen2.5-7B-Instruct")  # asked of the hub only when it loads


@pytest.mark.parametrize("load", [load_model, load_tokenizer])
def test_missing_directory_names_path_and_key(tmp_path, load):
    missing = tmp_path / "models" / "qwen"
    with pytest.raises(FileNotFoundError) as err:
        load(ModelSpec(str(missing)))
    assert str(err.value) == f"config key model.name: model directory {missing} does not exist"
    with pytest.raises(FileNotFoundError, match=r"^config key judges\.local\.model: "):
        load(ModelSpec(str(missing)), config_key="judges.local.model")


def test_missing_directory_fails_before_importing_transformers():
    code = (
        "import sys\n"
        "from interpflow.models import ModelSpec, load_model\n"
        "try:\n"
        "    load_model(ModelSpec('./no/such/model'))\n"
        "except FileNotFoundError:\n"
        "    assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "else:\n"
        "    raise SystemExit('loaded a missing model')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
