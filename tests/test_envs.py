"""The lock and the conda envs: constraints.txt pins every dependency, this environment is
installed from it, every rule names a conda env that parses, is pinned to the lock, and lists
every third-party package its rules' code imports."""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from interpflow.codehash import module_file

RULES = sorted((REPO / "workflow/rules").glob("*.smk"))
LIB = REPO / "src/interpflow"
# Imported only where an optional extra is installed and asked for in config; the HF path
# (or a clear error) runs without them, so the rule-family envs need not carry them.
OPTIONAL = {"vllm", "bitsandbytes"}
# API clients: only judge-env rules may reach them.
JUDGE_ONLY = {"openai", "anthropic"}


def _rules() -> list[dict]:
    """Each rule of workflow/rules: name, file, conda env path and script (string literals)."""
    out = []
    for smk in RULES:
        text = smk.read_text()
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE):
            body = m.group(2)
            conda = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", body, re.MULTILINE)
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", body, re.MULTILINE)
            out.append(
                {
                    "name": m.group(1),
                    "file": smk,
                    "conda": (smk.parent / conda.group(1)).resolve() if conda else None,
                    "script": (smk.parent / script.group(1)).resolve() if script else None,
                }
            )
    return out


def _env(path: Path) -> dict[str, str | None]:
    """Package name (normalised) -> pinned version (None if unpinned), conda and pip entries."""
    spec = yaml.safe_load(path.read_text())
    out = {}
    for dep in spec["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, _, version = (
                re.split(r"\s*#", item)[0].strip().partition("==" if "==" in item else "=")
            )
            out[_norm(name)] = version.strip() or None
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def _imports(path: Path, seen: set[Path], deep: bool = True) -> set[str]:
    """Top-level names of the modules ``path`` imports: at any depth of its code when ``deep``
    (a rule's script), else at module level (the interpflow modules it reaches, recursively;
    their lazy imports inside functions are optional backends or repeat module-level ones)."""
    if path in seen or not path.exists():
        return set()
    seen.add(path)
    names = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if deep else _module_level(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for mod in mods:
            parts = mod.split(".")
            if parts[0] == "interpflow":
                # every module and package on the way: interpflow.a (a.py or a/__init__.py),
                # interpflow.a.b (a/b.py), ... (a name that is not a module is skipped)
                for i in range(2, len(parts) + 1):
                    found = module_file(LIB, ".".join(parts[:i]))
                    if found is not None:
                        names |= _imports(found, seen, False)
            else:
                names.add(parts[0])
    return names


def _module_level(tree: ast.Module):
    """Statements run at import: the module body, into if/try blocks but not functions."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            stack += node.body + node.orelse + getattr(node, "finalbody", [])
            stack += [s for h in getattr(node, "handlers", []) for s in h.body]


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def _distributions(modules: set[str]) -> set[str]:
    dists = _packages_distributions()
    out = set()
    for mod in modules - set(sys.stdlib_module_names) - {"snakemake", "__future__"}:
        if mod in dists:
            out |= {_norm(d) for d in dists[mod]}
        else:
            out.add(_norm(mod))  # not installed here: it must still be in the env
    return out


def test_every_rule_has_an_existing_parsable_conda_env():
    rules = [r for r in _rules() if r["script"]]
    assert len(rules) >= 7, "expected the rules of workflow/rules/*.smk"
    for rule in rules:
        assert rule["conda"] is not None, (
            f"rule {rule['name']} ({rule['file'].name}) has no conda env"
        )
        assert rule["conda"].parent == REPO / "envs", rule
        assert rule["conda"].exists(), f"rule {rule['name']}: {rule['conda']} does not exist"
        assert _env(rule["conda"]), rule["conda"]


def _lock() -> dict[str, str]:
    sys.path.insert(0, str(REPO / "envs"))
    try:
        from pin import read_lock
    finally:
        sys.path.pop(0)
    return read_lock(REPO / "constraints.txt")


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_is_pinned_to_the_lock(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge"]
    pins = _env(env)
    py = pins.pop("python")
    assert py == "3.11", (env.name, py)
    pins.pop("pip")
    lock = _lock()
    for name, version in pins.items():
        assert version, f"{env.name}: {name} is not pinned"
        assert name in lock, f"{env.name}: {name} is not in constraints.txt (add it to pyproject)"
        assert lock[name] == version, (
            f"{env.name}: {name}=={version}, constraints.txt has {lock[name]}: run make lock"
        )


def test_this_environment_is_installed_from_the_lock():
    """The suite runs what constraints.txt pins: every locked package that is installed here
    has the locked version (torch's CUDA packages are locked for GPU nodes, absent here)."""
    assert sys.version_info[:2] == (3, 11), "the lock is compiled for Python 3.11"
    lock = _lock()
    installed = {_norm(d.metadata["Name"]): d.version for d in md.distributions()}
    assert "torch" in installed and "snakemake" in installed
    drift = {
        name: (version, installed[name].split("+")[0])
        for name, version in lock.items()
        if name in installed and installed[name].split("+")[0] != version
    }
    assert not drift, f"installed versions differ from constraints.txt (locked, installed): {drift}"
    missing = {"torch", "transformers", "peft", "polars", "snakemake", "pytest"} - set(installed)
    assert not missing, missing


def test_lock_covers_every_declared_dependency():
    """Every requirement in pyproject.toml (runtime + dev extra) is pinned in the lock."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {_norm(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in reqs}
    assert not names - set(_lock()), names - set(_lock())


def test_envs_hold_what_their_rules_import():
    missing = {}
    for rule in _rules():
        if not rule["script"] or not rule["conda"] or not rule["conda"].exists():
            continue
        need = _distributions(_imports(rule["script"], set()) - OPTIONAL)
        have = set(_env(rule["conda"]))
        if rule["conda"].name != "judge.yaml":
            need -= JUDGE_ONLY  # reachable only through judge backends chosen in config
        lacking = sorted(need - have)
        if lacking:
            missing[f"{rule['name']} ({rule['conda'].name})"] = lacking
    assert not missing, f"conda envs lack packages their rules import: {missing}"
