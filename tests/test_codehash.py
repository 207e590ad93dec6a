"""interpflow.codehash: a rule's code hash covers exactly its script's import closure."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO

from interpflow.codehash import code_hash, import_closure


def _lib(tmp_path: Path) -> tuple[Path, Path]:
    lib = tmp_path / "src" / "interpflow"
    (lib / "study").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "engine.py").write_text("from . import util\n")
    (lib / "util.py").write_text("X = 1\n")
    (lib / "unused.py").write_text("Y = 2\n")
    (lib / "study" / "__init__.py").write_text("")
    (lib / "study" / "stage.py").write_text(
        "def run():\n    from interpflow.engine import thing\n    from ..util import X\n"
    )
    script = tmp_path / "scripts" / "stage.py"
    script.parent.mkdir()
    script.write_text("from interpflow.study import stage\n")
    return lib, script


def test_closure_follows_absolute_relative_and_function_level_imports(tmp_path):
    lib, script = _lib(tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in import_closure(script, lib)}
    assert names == {
        "scripts/stage.py",
        "src/interpflow/__init__.py",
        "src/interpflow/engine.py",
        "src/interpflow/util.py",
        "src/interpflow/study/__init__.py",
        "src/interpflow/study/stage.py",
    }


def test_hash_changes_with_the_closure_only(tmp_path):
    lib, script = _lib(tmp_path)
    h0 = code_hash(script, lib)
    (lib / "unused.py").write_text("Y = 3\n")
    assert code_hash(script, lib) == h0
    (lib / "util.py").write_text("X = 2\n")
    import interpflow.codehash as ch

    ch._imports.cache_clear()
    assert code_hash(script, lib) != h0


def test_every_rule_script_reaches_the_modules_it_uses():
    """The hand lists this replaced missed these: steering eval/baselines use the sampling
    helpers, tribunal probes and the steering report use figures."""
    lib = REPO / "src" / "interpflow"
    for script, module in [
        ("steering/eval", "sampling.py"),
        ("steering/baselines", "sampling.py"),
        ("tribunal/probes", "figures.py"),
        ("steering/report", "figures.py"),
    ]:
        path = REPO / "scripts" / f"{script}.py"
        assert path.is_file(), path
        assert module in {p.name for p in import_closure(path, lib)}, (script, module)
