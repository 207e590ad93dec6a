"""interpflow.findings: findings rows, their gathering with rule seconds, the README table."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from interpflow import findings as F

REPO = Path(__file__).resolve().parents[1]


def _finding(**kw) -> F.Finding:
    base = {
        "study": "deception",
        "instance": "smollm2",
        "model": "smollm2",
        "finding": "a linear probe reads the prompt category",
        "metric": "AUROC (layer 15)",
        "value": 0.95,
        "ci": (0.9, 0.99),
        "n": 60,
        "expect": "CI above each control's",
        "holds": True,
        "controls": [F.Control("form", 0.7, (0.6, 0.8), 0.25, (0.15, 0.35))],
    }
    base.update(kw)
    return F.Finding(**base)


def test_rows_round_trip_and_non_finite_numbers_become_null(tmp_path):
    rows = [_finding(), _finding(value=math.nan, ci=None, holds=False, controls=[])]
    F.write(tmp_path / "f.json", rows)
    raw = json.loads((tmp_path / "f.json").read_text())
    assert raw[1]["value"] is None and raw[1]["ci"] is None  # NaN is not valid JSON
    back = F.read(tmp_path / "f.json")
    assert back[0].controls[0] == F.Control("form", 0.7, [0.6, 0.8], 0.25, [0.15, 0.35])
    assert back[0].value == 0.95 and back[1].holds is False


def _bench(path, *seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\n"
    path.write_text(header + "".join(f"{s}\t0:00:01\t10\n" for s in seconds))


def test_rule_seconds_sum_each_rules_latest_run(tmp_path):
    _bench(tmp_path / "a.tsv", 100.0, 3.5)  # a rerun: the last row counts
    _bench(tmp_path / "sub/b.tsv", 2.25)
    (tmp_path / "empty.tsv").write_text("s\th:m:s\n")
    assert F.wall_seconds(tmp_path) == pytest.approx(5.75)
    assert F.wall_seconds(tmp_path / "nothing") is None


def test_gather_writes_rows_rule_seconds_and_a_table(tmp_path):
    F.write(tmp_path / "d.json", [_finding()])
    F.write(tmp_path / "t.json", [_finding(study="tribunal", holds=False, controls=[])])
    _bench(tmp_path / "bench/deception/smollm2/probes.tsv", 90.0)
    out = F.gather(
        [tmp_path / "d.json", tmp_path / "t.json"],
        tmp_path / "findings.json",
        tmp_path / "findings.md",
        benchmarks=tmp_path / "bench",
        out_html=tmp_path / "findings.html",
    )
    assert [f.study for f in out] == ["deception", "tribunal"]
    raw = json.loads((tmp_path / "findings.json").read_text())
    assert raw["rule_seconds"] == [
        {"study": "deception", "instance": "smollm2", "seconds": 90.0},
        {"study": "tribunal", "instance": "smollm2", "seconds": None},
    ]
    md = (tmp_path / "findings.md").read_text().splitlines()
    assert md[0] == "**1 of 2 findings hold**"
    table = md[md.index(next(line for line in md if line.startswith("| study"))) :]
    assert table[2] == (
        "| deception | smollm2 | finding | smollm2 | AUROC (layer 15) | 0.950 [0.900, 0.990] "
        "| 60 | - | form 0.700: +0.250 [0.150, 0.350] | yes | 1.5 min |"
    )
    assert table[3].endswith("| - | **no** | n/a |")
    text = F.summary_text(out)
    assert "vs form: 0.700 [0.600, 0.800], margin +0.250 [0.150, 0.350]" in text
    assert "DOES NOT HOLD" in text
    page = (tmp_path / "findings.html").read_text()
    assert "<b>1 of 2 findings hold</b>" in page
    assert page.count("<tr") == 3 and page.count('style="background:#fde2e2"') == 1
    assert "<td>form 0.700: +0.250 [0.150, 0.350]</td>" in page
    assert "<i>CI above each control&#x27;s</i>" in page


def test_power_column_from_each_rows_own_ci_n_and_null():
    """n to decide: n·(h/|d|)² from the row's CI on the null's side (interpflow.power), the
    undecided margins (null 0) after it; a row without a null (a check) shows '-'."""
    undecided = _finding(
        value=0.7,
        ci=(0.45, 0.9),
        n=20,
        null=0.5,  # h 0.25, effect 0.2: 20 · 1.5625 = 31.25 -> 32
        controls=[
            F.Control("form (trace form only)", 0.6, None, 0.1, (-0.1, 0.3)),  # 20 · 4 = 80
            F.Control("lexical", 0.5, None, 0.2, (0.05, 0.35)),  # decided: not listed
        ],
    )
    assert F.power_text(undecided) == "n≈32 (1.6x); margins: form n≈80 (4.0x)"
    assert F.power_text(_finding(null=0.5)) == "decided at n=60"
    assert F.power_text(_finding(null=None)) == "-"
    assert F.power_text(_finding(null=0.5, ci=None, controls=[])) == "n/a"
    row = F.table_markdown([undecided], {}).splitlines()[2]
    assert "| 20 | n≈32 (1.6x); margins: form n≈80 (4.0x) | form (trace form only) 0.600" in row
    assert "n to decide (CI excluding 0.5): n≈32 (1.6x)" in F.summary_text([undecided])
    assert F.Finding.from_dict(dataclasses.asdict(undecided)).null == 0.5


def test_readme_table_is_replaced_between_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{F.README_START}\nold\n{F.README_END}\nafter\n")
    assert F.update_readme(readme, "| new |")
    assert readme.read_text() == f"# x\nbefore\n{F.README_START}\n| new |\n{F.README_END}\nafter\n"
    assert not F.update_readme(readme, "| new |")  # idempotent
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="bare.md: no <!-- reference-run:start -->"):
        F.update_readme(tmp_path / "bare.md", "| new |")


def test_headline_counts_findings_only_with_controls_and_checks_apart(tmp_path):
    rows = [
        _finding(),  # holds
        _finding(instance="smollm2-random", holds=False, kind="control"),
        _finding(study="tribunal", holds=False),
        _finding(study="tribunal", metric="class balance", holds=True, kind="check"),
        _finding(study="steering", holds=True),
    ]
    assert F.headline(rows) == (
        "2 of 3 findings hold; beside them 1 control row, 1 of 1 checks pass"
    )
    assert F.headline(rows[:1]) == "1 of 1 findings hold"
    text = F.summary_text(rows)
    assert "deception/smollm2-random (smollm2, control):" in text
    assert "control row: misses the criterion" in text and "check passes" in text
    assert text.count("DOES NOT HOLD") == 1  # the tribunal finding, not the control row
    F.write(tmp_path / "f.json", rows)
    assert [f.kind for f in F.read(tmp_path / "f.json")] == [r.kind for r in rows]
    page = F.table_html(rows, {})
    assert page.count('style="background:#fde2e2"') == 1  # the failing finding only
    with pytest.raises(ValueError, match="finding kind 'baseline': not one of"):
        _finding(kind="baseline")


def test_rows_written_before_kinds_read_as_findings():
    row = json.loads(json.dumps(dataclasses.asdict(_finding())))
    del row["kind"]
    assert F.Finding.from_dict(row).kind == "finding"


def test_main_prints_the_headline_and_writes_no_file_without_readme(tmp_path, capsys):
    """The run path (make run) writes no tracked file: the README only with --readme."""
    F.write(tmp_path / "d.json", [_finding(), _finding(kind="control", holds=False)])
    F.gather([tmp_path / "d.json"], tmp_path / "findings.json", tmp_path / "findings.md")
    readme = tmp_path / "README.md"
    readme.write_text(f"{F.README_START}\nold\n{F.README_END}\n")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    F.main([str(tmp_path / "findings.json")])
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    out = capsys.readouterr().out
    assert "=== 1 of 1 findings hold; beside them 1 control row ===" in out
    assert "--readme README.md" in out  # says how to update the README, does not
    F.main([str(tmp_path / "findings.json"), "--readme", str(readme)])
    assert "| deception | smollm2 | finding |" in readme.read_text()


def test_make_run_writes_no_tracked_file_and_names_its_outputs_by_config():
    """`make run` writes into results/findings/reference/ only: no --readme, no fixed path."""
    from interpflow.config_id import REFERENCE

    make = (REPO / "Makefile").read_text()
    recipe = make.split("\nrun: install\n", 1)[1].split("\n\n", 1)[0]
    assert "--readme" not in recipe and "README" not in recipe
    assert "results/report.html" not in recipe and "results/findings.json" not in recipe
    assert "interpflow.config_id --dir $(REFERENCE)" in recipe
    reference = make.split("\nREFERENCE ?=", 1)[1].split("\nBIN", 1)[0]
    assert tuple(reference.replace("\\", " ").split()) == REFERENCE


@pytest.mark.e2e
def test_all_on_the_default_config_writes_under_its_config_id(all_run):
    """`snakemake all` without --configfile: what spans the instances is under
    results/findings/default/, no fixed path; the tribunal's class balance is a check."""
    work, _ = all_run
    out = work / "results/findings/default"
    for name in ("findings.json", "findings.md", "findings.html", "ledger.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "judge_ledger.csv").is_file()
    assert json.loads((out / "configfiles.json").read_text()) == {
        "config_id": "default",
        "configfiles": ["config/config.yaml"],
    }
    assert not [p.name for p in (work / "results").glob("*.*")]  # no fixed results/<file>
    rows = [
        F.Finding.from_dict(r) for r in json.loads((out / "findings.json").read_text())["findings"]
    ]
    kinds = {(f.study, f.metric.split(",")[0]): f.kind for f in rows}
    assert kinds[("tribunal", "share of correct traces among the probes' traces")] == "check"
    assert (out / "findings.md").read_text().startswith(f"**{F.headline(rows)}**")
