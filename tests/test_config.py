"""interpflow.config: sweeps expand to named instances, a preset keeps only what it declares,
schema defaults, and the config -> dataclass converter."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from interpflow.config import (
    declared_instances,
    expand_sweeps,
    from_config,
    resolve_instances,
    schema_defaults,
)


def test_sweep_expands_to_the_grid_with_readable_names():
    out = expand_sweeps(
        "inoculation",
        {
            "base": {"model": "stub"},
            "lr": {
                "model": "stub",
                "training": {"epochs": 2},
                "sweep": {"training.lr": [0.0001, 0.001], "training.seed": [0, 1]},
            },
        },
    )
    assert list(out) == [
        "base",
        "lr-lr0.0001-seed0",
        "lr-lr0.0001-seed1",
        "lr-lr0.001-seed0",
        "lr-lr0.001-seed1",
    ]
    assert out["lr-lr0.001-seed1"] == {
        "model": "stub",
        "training": {"epochs": 2, "lr": 0.001, "seed": 1},
    }
    # each grid point is its own copy
    assert out["lr-lr0.0001-seed0"]["training"]["lr"] == 0.0001


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"bad name": {}}, r"config key steering\.bad name: instance names"),
        ({"a": {"sweep": {"seed": []}}}, r"config key steering\.a\.sweep\.seed: a non-empty list"),
        ({"a": {"sweep": {}}}, r"config key steering\.a\.sweep: a non-empty mapping"),
        ({"a": 3}, r"config key steering\.a: an instance is a mapping"),
        (
            {"a-seed0": {}, "a": {"sweep": {"seed": [0]}}},
            r"config key steering\.a: instance 'a-seed0' is declared twice",
        ),
        (
            {"a": {"train": 1, "sweep": {"train.lr": [1]}}},
            r"config key steering\.a\.sweep\.train\.lr: train is not a mapping",
        ),
    ],
)
def test_bad_instances_name_the_config_key(entries, message):
    with pytest.raises(ValueError, match=message):
        expand_sweeps("steering", entries)


def test_a_preset_means_exactly_the_instances_it_declares():
    merged = {
        "deception": {"default": {"model": "stub"}, "qwen": {"model": "qwen"}},
        "tribunal": {"default": {"model": "stub"}},
        "steering": {"s": {"sweep": {"seed": [0, 1]}}},
    }
    preset = {"deception": {"qwen": {}}, "steering": {"s": {"sweep": {"seed": [0, 1]}}}}
    only = declared_instances([preset])
    studies = resolve_instances(merged, only)
    assert studies == {
        "deception": {"qwen": {"model": "qwen"}},
        "tribunal": {},
        "inoculation": {},
        "steering": {"s-seed0": {"seed": 0}, "s-seed1": {"seed": 1}},
    }
    # without a preset every declared instance stays
    assert set(resolve_instances({"tribunal": {"a": {}, "b": {}}})["tribunal"]) == {"a", "b"}


def test_schema_defaults_follow_properties_and_refs():
    schema = {
        "$defs": {"opt": {"type": "object", "properties": {"lr": {"default": 0.1}}}},
        "type": "object",
        "properties": {
            "n": {"type": "integer", "default": 3},
            "opt": {"$ref": "#/$defs/opt"},
            "nested": {"type": "object", "default": {}, "properties": {"k": {"default": "x"}}},
            "free": {"type": "string"},
        },
    }
    assert schema_defaults(schema) == {"n": 3, "opt": {"lr": 0.1}, "nested": {"k": "x"}}


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    modules: tuple[str, ...] = ("q",)


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    layers: tuple[int, ...] = (1,)
    span: tuple[float, float] | None = None
    name: str = "x"


def test_from_config_builds_tuples_nested_dataclasses_and_names_unknown_keys():
    out = from_config(
        Outer,
        {"inner": {"lr": 1, "modules": ["q", "v"]}, "layers": [2, 3], "span": [0.3, 0.8]},
    )
    assert out == Outer(inner=Inner(lr=1.0, modules=("q", "v")), layers=(2, 3), span=(0.3, 0.8))
    assert isinstance(out.inner.lr, float)
    assert from_config(Outer, {}) == Outer()
    with pytest.raises(
        ValueError, match=r"config key steering\.train\.inner: unknown keys \['lrr'\]"
    ):
        from_config(Outer, {"inner": {"lrr": 1}}, "steering.train")


def _dataclass_defaults(cls) -> dict:
    import dataclasses

    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }


def test_engine_dataclass_defaults_equal_the_schema_defaults():
    """The schema is the one place defaults live: the engine dataclasses built from its
    blocks (judges.<name>, stub, an instance's model) default to the same values."""
    from conftest import REPO

    from interpflow.judges import JudgeConfig
    from interpflow.models import ModelSpec
    from interpflow.stub import StubConfig

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    judge = schema_defaults(schema["$defs"]["judge"], schema["$defs"])
    assert "backend" in schema["$defs"]["judge"]["required"]  # so its default never applies
    del judge["backend"]
    assert judge == {k: v for k, v in _dataclass_defaults(JudgeConfig).items() if k in judge}
    assert set(_dataclass_defaults(JudgeConfig)) - set(judge) == {"name"}  # set by the rule
    stub = schema_defaults(schema["properties"]["stub"], schema["$defs"])
    assert stub == {k: v for k, v in _dataclass_defaults(StubConfig).items() if k in stub}
    use = schema_defaults(schema["$defs"]["model_use"], schema["$defs"])
    spec = _dataclass_defaults(ModelSpec)
    assert {k: use[k] for k in ("dtype", "device")} == {k: spec[k] for k in ("dtype", "device")}
    decl = schema_defaults(schema["$defs"]["model"], schema["$defs"])
    assert {k: decl[k] for k in ("revision", "trust_remote_code")} == {
        k: spec[k] for k in ("revision", "trust_remote_code")
    }


def test_fill_defaults_fills_declared_properties_and_keeps_free_form_maps():
    from interpflow.config import fill_defaults

    defs = {"use": {"type": "object", "properties": {"dtype": {"default": "auto"}}}}
    schema = {
        "properties": {
            "model": {"$ref": "#/$defs/use"},
            "train": {
                "type": "object",
                "default": {},
                "properties": {"lr": {"default": 0.1}, "seed": {"default": 0}},
            },
            "sets": {"type": "object", "default": {"a": "x.jsonl", "b": "y.jsonl"}},
            "n": {"type": "integer", "default": 3},
        }
    }
    data = {"model": {"name": "q"}, "train": {"lr": 0.5}, "sets": {"c": "z.jsonl"}}
    assert fill_defaults(data, schema, defs) == {
        "model": {"name": "q", "dtype": "auto"},
        "train": {"lr": 0.5, "seed": 0},
        "sets": {"c": "z.jsonl"},
        "n": 3,
    }
    assert fill_defaults({}, schema, defs)["sets"] == {"a": "x.jsonl", "b": "y.jsonl"}


JSON_SCHEMA_KEYWORDS = {
    "$schema", "$ref", "$defs", "type", "description", "default", "properties",
    "additionalProperties", "required", "items", "minItems", "maxItems", "enum", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "propertyNames", "not",
    "anyOf", "oneOf", "allOf", "const", "uniqueItems", "minLength", "examples", "contains", "minProperties",
}  # fmt: skip


def _subschemas(node, path):
    yield path, node
    for key in ("properties", "$defs"):
        for name, sub in (node.get(key) or {}).items():
            yield from _subschemas(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties", "not", "propertyNames"):
        if isinstance(node.get(key), dict):
            yield from _subschemas(node[key], f"{path}[{key}]")


def test_every_schema_key_is_described_and_well_formed():
    """A description with a comma inside a YAML flow mapping ({..., description: a, b}) splits
    into a stray key; every (sub)schema uses JSON Schema keywords only, and every property
    has a description."""
    from conftest import REPO

    for path in sorted((REPO / "workflow/schemas").glob("*.schema.yaml")):
        schema = yaml.safe_load(path.read_text())
        for where, node in _subschemas(schema, path.name):
            stray = set(node) - JSON_SCHEMA_KEYWORDS
            assert not stray, f"{where}: not JSON Schema keywords: {sorted(stray)}"
            if "[not]" in where:
                continue  # a constraint's shape (e.g. "not every set null"), not a config key
            for name, sub in (node.get("properties") or {}).items():
                assert "$ref" in sub or isinstance(sub.get("description"), str), f"{where}.{name}"


def _module_level_imports(path):
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.If, ast.Try)):
            stack += node.body + node.orelse + getattr(node, "finalbody", [])
            stack += [s for h in getattr(node, "handlers", []) for s in h.body]
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_snakefile_imports_only_light_modules_at_parse_time():
    """The rule files import the standard library, yaml, snakemake and interpflow modules
    whose own module-level imports (transitively) are the standard library and yaml only."""
    import re
    import sys

    from conftest import REPO

    light = set(sys.stdlib_module_names) | {"yaml", "snakemake", "__future__"}
    smk = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    todo = set()
    for path in smk:
        for m in re.finditer(r"^(?:from|import) ([\w.]+)", path.read_text(), re.MULTILINE):
            top = m.group(1).split(".")[0]
            if top == "interpflow":
                todo.add(m.group(1))
            else:
                assert top in light, f"{path.name} imports {m.group(1)} at parse time"
    seen = set()
    while todo:
        mod = todo.pop()
        seen.add(mod)
        file = REPO / "src" / (mod.replace(".", "/") + ".py")
        if not file.exists():
            file = REPO / "src" / mod.replace(".", "/") / "__init__.py"
        for name in _module_level_imports(file):
            top = name.split(".")[0]
            if top == "interpflow":
                if name not in seen:
                    todo.add(name)
            else:
                assert top in light, f"{mod} imports {name} at module level (parsed by snakemake)"
    assert "interpflow.config" in seen and "interpflow.codehash" in seen


def test_two_config_files_declaring_one_instance_stop_unless_the_later_is_an_overlay():
    from interpflow.config import ConfigError, check_layering

    a = {"deception": {"mine": {"probes": {"layer": 2}}}, "steering": {"s": {}}}
    b = {"deception": {"mine": {"capture": {"layers": [2]}}}}
    with pytest.raises(ConfigError) as e:
        check_layering(files=[("a.yaml", "deception: ...", a), ("b.yaml", "deception: ...", b)])
    assert str(e.value).startswith(
        "config key deception.mine: declared in both a.yaml and b.yaml, which would merge "
        "into one hybrid instance"
    )
    assert "'# interpflow: overlay'" in str(e.value)
    for marker in ("# interpflow: overlay\n", "# interpflow: overlay (the rehearsal of p.yaml)\n"):
        check_layering(files=[("a.yaml", "", a), ("b.yaml", marker + "deception: ...", b)])
    check_layering(files=[("a.yaml", "", a), ("c.yaml", "", {"deception": {"other": {}}})])


def test_layered_config_files_snakefile_first_then_the_command_line(tmp_path, monkeypatch):
    from interpflow.config import layered_config_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("models: {stub: {source: stub}}\n")
    (tmp_path / "preset.yaml").write_text("# interpflow: overlay\ntribunal: {mine: {}}\n")
    (tmp_path / "empty.yaml").write_text("")
    outside = tmp_path.parent / f"{tmp_path.name}_outside.yaml"
    outside.write_text("steering: {}\n")
    files = layered_config_files(
        [tmp_path / "base.yaml", tmp_path / "preset.yaml"],  # snakemake lists the CLI's too
        [tmp_path / "preset.yaml", "empty.yaml", outside],
    )
    assert [f[0] for f in files] == ["base.yaml", "preset.yaml", "empty.yaml", str(outside)]
    assert files[1][1].startswith("# interpflow: overlay")
    assert [f[2] for f in files] == [
        {"models": {"stub": {"source": "stub"}}},
        {"tribunal": {"mine": {}}},
        {},  # an empty file loads as an empty mapping
        {"steering": {}},
    ]


def test_fill_instance_defaults_from_each_study_schema():
    from conftest import REPO

    from interpflow.config import STUDIES, fill_instance_defaults

    instances = {s: {} for s in STUDIES} | {"tribunal": {"mine": {"probes": {"seed": 7}}}}
    out = fill_instance_defaults(instances, REPO / "workflow" / "schemas")
    assert out is instances
    schema = yaml.safe_load((REPO / "workflow/schemas/tribunal.schema.yaml").read_text())
    defs = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["$defs"]
    expected = schema_defaults(schema, defs)
    mine = instances["tribunal"]["mine"]
    assert mine["probes"]["seed"] == 7  # given: kept
    assert set(expected) <= set(mine)  # every top-level default filled
    assert mine["probes"]["C"] == expected["probes"]["C"]
