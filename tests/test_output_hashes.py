"""interpflow.output_hashes: volatile keys and columns are left out, a changed value is found."""

from __future__ import annotations

import json
import sqlite3

import polars as pl

from interpflow.output_hashes import compare, main, manifest, volatile


def _write_run(root, *, seconds=1.5, written_at="2026-01-01T00:00:00Z", value=3, code="abc"):
    """A small results tree in ``root``/results; returns the results directory."""
    results = root / "results"
    (results / "study" / "default").mkdir(parents=True)
    (results / "study" / "default" / "summary.json").write_text(
        json.dumps(
            {
                "n": value,
                "written_at": written_at,
                "code": code,
                "stats": {"elapsed_s": seconds, "path": f"{root}/results/x"},
            }
        )
    )
    pl.DataFrame({"x": [1, value], "seconds": [seconds, seconds]}).write_parquet(
        results / "study" / "default" / "table.parquet"
    )
    (results / "study" / "default" / "rows.csv").write_text(f"x,wall_s\n{value},{seconds}\n")
    (results / "findings").mkdir()
    (results / "findings" / "ledger.csv").write_text(f"rule,s\nx,{seconds}\n")
    (results / "model.bin").write_bytes(bytes([value]))
    con = sqlite3.connect(results / "cache.sqlite")
    con.execute("CREATE TABLE t (key TEXT, value INTEGER, created_at REAL)")
    con.execute("INSERT INTO t VALUES ('k', ?, ?)", (value, seconds))
    con.commit()
    con.close()
    return results


def test_volatile_names():
    for key in (
        "elapsed_s",
        "written_at",
        "seconds",
        "wall_seconds",
        "seconds_this_run",
        "timestamp",
        "code",
    ):
        assert volatile(key), key
    for key in ("n", "n_texts", "candidate", "dataset", "codes", "max_new_tokens"):
        assert not volatile(key), key


def test_excluded_keys_do_not_change_the_manifest(tmp_path):
    a = manifest(_write_run(tmp_path / "a"))
    b = manifest(
        _write_run(tmp_path / "b", seconds=99.0, written_at="2027-05-05T00:00:00Z", code="def")
    )
    assert set(a) == {
        "cache.sqlite",
        "model.bin",
        "study/default/rows.csv",
        "study/default/summary.json",
        "study/default/table.parquet",
    }  # the ledger is left out
    assert a == b  # times, code hash and the working directory's path differ: same hashes


def test_a_changed_value_is_detected(tmp_path):
    a = manifest(_write_run(tmp_path / "a", value=3))
    b = manifest(_write_run(tmp_path / "b", value=4))
    diff = compare(a, b)
    assert diff["changed"] == sorted(a)  # every file carries the value
    assert diff["identical"] == diff["missing"] == diff["added"] == []


def test_main_compares_with_a_saved_manifest(tmp_path, capsys):
    results = _write_run(tmp_path / "a")
    saved = tmp_path / "before.json"
    assert main([str(results), "-o", str(saved)]) == 0
    assert main([str(results), "--compare", str(saved)]) == 0
    (results / "model.bin").write_bytes(b"\x09")
    assert main([str(results), "--compare", str(saved)]) == 1
    assert "changed: model.bin" in capsys.readouterr().out
