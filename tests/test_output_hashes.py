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


def _safetensors(path, tensors: dict, metadata: dict) -> None:
    """A safetensors file with its header entries in the order given."""
    import struct

    header, body = {"__metadata__": metadata}, b""
    for name, data in tensors.items():
        header[name] = {
            "dtype": "U8",
            "shape": [len(data)],
            "data_offsets": [len(body), len(body) + len(data)],
        }
        body += data
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def test_what_a_run_writes_in_no_fixed_order_compares_equal(tmp_path):
    """Header order, CSV column order, a set-valued JSON list, the findings' durations and
    SQLite's transient files do not change the manifest; a tensor's bytes do."""
    a, b = tmp_path / "a" / "results", tmp_path / "b" / "results"
    for root in (a, b):
        root.mkdir(parents=True)
    _safetensors(a / "dw.safetensors", {"x": b"\x01", "y": b"\x02"}, {"neg": "n", "pos": "p"})
    _safetensors(b / "dw.safetensors", {"y": b"\x02", "x": b"\x01"}, {"pos": "p", "neg": "n"})
    (a / "t.csv").write_text("k,u,v\nx,1,2\n")
    (b / "t.csv").write_text("k,v,u\nx,2,1\n")
    (a / "adapter_config.json").write_text(json.dumps({"target_modules": ["q", "v"]}))
    (b / "adapter_config.json").write_text(json.dumps({"target_modules": ["v", "q"]}))
    (a / "findings.md").write_text("| x | 0.5 | 4.3 min |\n")
    (b / "findings.md").write_text("| x | 0.5 | 17.6 min |\n")
    (b / "cache.sqlite-wal").write_bytes(b"x")
    assert manifest(a) == manifest(b)
    _safetensors(b / "dw.safetensors", {"y": b"\x03", "x": b"\x01"}, {"pos": "p", "neg": "n"})
    (b / "findings.md").write_text("| x | 0.6 | 17.6 min |\n")
    assert compare(manifest(a), manifest(b))["changed"] == ["dw.safetensors", "findings.md"]
