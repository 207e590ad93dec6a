"""Checks made at planning (interpflow.planning): schema errors one line each with the file and
a suggestion, layers against the model's depth and the capture, positions against the
generation length, hub models missing from the local cache when offline."""

from __future__ import annotations

import pytest
from conftest import REPO

from interpflow.config import ConfigError
from interpflow.planning import (
    check_captured,
    check_layers,
    check_positions_fit,
    hub_cache_message,
    hub_model_cached,
    schema_error_lines,
)

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def test_schema_errors_are_every_error_one_line_each_with_file_and_suggestion():
    preset = {
        "decepton": {"default": {}},
        "deception": {
            "mine": {
                "generation": {"max_new_tokenz": 5},
                "capture": {"store_dtype": "float61"},
                "banks": ["normal"],
            }
        },
    }
    sources = [("config/config.yaml", {"deception": {"default": {}}}), ("preset.yaml", preset)]
    lines = schema_error_lines(config=preset, schema_file=SCHEMA, sources=sources)
    assert lines == [
        "preset.yaml: decepton: unknown key (did you mean deception?)",
        (
            "preset.yaml: deception.mine.banks: ['normal'] has 1 item(s), needs at least 2 "
            "(Prompt categories, at least two (the probes' classes); each is "
            "<bank_dir>/<name>.txt, one prompt per line)"
        ),
        (
            "preset.yaml: deception.mine.capture.store_dtype: 'float61' is not one of "
            "['float16', 'float32'] (did you mean float16?)"
        ),
        (
            "preset.yaml: deception.mine.generation.max_new_tokenz: unknown key "
            "(did you mean max_new_tokens?)"
        ),
    ]
    # the file is the last one that declares the key (config/config.yaml here)
    bad = {"deception": {"default": {"probes": {"layer": "twenty"}}}}
    lines = schema_error_lines(
        config=bad, schema_file=SCHEMA, sources=[("config/config.yaml", bad), ("p.yaml", {})]
    )
    assert lines == [
        "config/config.yaml: deception.default.probes.layer: 'twenty' is not of type 'integer'"
    ]


def test_layers_beyond_the_depth_or_not_captured_name_the_keys():
    with pytest.raises(ConfigError) as e:
        check_layers(
            key="deception.x.capture.layers",
            layers=[2, 99],
            depth=30,
            depth_from="model 'smollm2': results/models/smollm2/config.json num_hidden_layers",
        )
    assert str(e.value).startswith(
        "config key deception.x.capture.layers: layer(s) [99] beyond the model's 30 decoder "
        "layers (model 'smollm2': results/models/smollm2/config.json num_hidden_layers): "
        "use layers 0..29"
    )
    check_layers(key="k", layers=[99], depth=None, depth_from="")  # unknown depth: no check
    with pytest.raises(ConfigError) as e:
        check_captured(
            key="deception.x.probes.layer",
            what="layer",
            wanted=[15],
            captured_key="deception.x.capture.layers",
            captured=[20],
        )
    assert str(e.value) == (
        "config key deception.x.probes.layer: layer 15 is not captured "
        "(deception.x.capture.layers: [20]): add 15 to deception.x.capture.layers, or set "
        "deception.x.probes.layer to what it captures"
    )


def test_response_positions_past_max_new_tokens_name_both_keys():
    kwargs = {"key": "d.x.capture.positions", "tokens_key": "d.x.generation.max_new_tokens"}
    check_positions_fit(**kwargs, positions=["last_prompt", "response[0..3]"], max_new_tokens=4)
    with pytest.raises(ConfigError) as e:
        check_positions_fit(**kwargs, positions=["last_prompt", "response[0..3]"], max_new_tokens=1)
    assert str(e.value).startswith(
        "config key d.x.capture.positions: response[3] needs 4 response tokens, but "
        "d.x.generation.max_new_tokens is 1, so every row would skip it"
    )
    with pytest.raises(ConfigError, match=r"config key d.x.capture.positions: unknown position"):
        check_positions_fit(**kwargs, positions=["response[x]"], max_new_tokens=8)


def test_an_uncached_hub_model_stops_only_when_offline(tmp_path, monkeypatch):
    repo = tmp_path / "models--Org--m"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub_cache_message(repo_id="Org/m", revision=None, key="models.m.source") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = hub_cache_message(repo_id="Org/m", revision=None, key="models.m.source")
    assert message.startswith("config key models.m.source: hub model 'Org/m' is not in the local")
    assert "huggingface-cli download Org/m" in message
    (repo / "snapshots/abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text("abc")
    assert not hub_model_cached(repo_id="Org/m", revision=None, cache=tmp_path)
    (repo / "snapshots/abc/config.json").write_text("{}")
    assert hub_model_cached(repo_id="Org/m", revision=None, cache=tmp_path)
    assert hub_model_cached(repo_id="Org/m", revision="abc", cache=tmp_path)
    assert not hub_model_cached(repo_id="Org/m", revision="v2", cache=tmp_path)
    assert hub_cache_message(repo_id="Org/m", revision=None, key="models.m.source") is None
