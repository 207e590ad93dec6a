"""interpflow.ledger: per-rule and per-instance costs from benchmark files, plan estimates."""

from __future__ import annotations

import pytest
from conftest import REPO, copy_repo

from interpflow import ledger as L

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path, *runs):
    """runs: (wall s, max_rss MB, cpu s); the last one is the latest run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n" for s, rss, cpu in runs)
    path.write_text(HEADER + rows)


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "benchmarks/results"
    _bench(root / "deception/a/generate.tsv", (999.0, 1.0, 1.0), (100.0, 900.0, 150.0))
    _bench(root / "deception/a/probes.tsv", (20.0, 400.0, 30.0))
    _bench(root / "steering/b/adapters/lora.tsv", (60.0, 700.0, 100.0))
    _bench(root / "steering/b/adapters/dora.tsv", (80.0, 1200.0, 140.0))
    (root / "steering/b/empty.tsv").write_text(HEADER)
    return root


def test_a_cross_study_rule_is_filed_under_its_own_name(tmp_path):
    root = tmp_path / "benchmarks/results"
    _bench(root / "atlas/smollm2/atlas.tsv", (45.0, 800.0, 11.0))
    (row,) = L.read_benchmarks(root).iter_rows(named=True)
    assert (row["study"], row["instance"], row["rule"], row["job"]) == (
        "atlas", "smollm2", "atlas", "atlas"
    )  # fmt: skip
    assert L.measured_rates(L.read_benchmarks(root)) == {"atlas": 45.0}


def test_ledger_sums_each_rules_latest_run_per_rule_and_instance(bench):
    jobs = L.read_benchmarks(bench)
    assert jobs.height == 4
    assert set(jobs["rule"]) == {"deception_generate", "deception_probes", "steering_adapters"}
    per_rule, per_instance = L.ledger(jobs, gpu={"deception_generate", "steering_adapters"})
    a = per_instance.filter(study="deception").row(0, named=True)
    assert (a["jobs"], a["wall_s"], a["cpu_s"], a["gpu_s"], a["max_rss_mb"]) == (
        2, 120.0, 180.0, 100.0, 900.0
    )  # fmt: skip
    b = per_rule.filter(rule="steering_adapters").row(0, named=True)
    assert (b["jobs"], b["wall_s"], b["gpu_s"], b["max_rss_mb"]) == (2, 140.0, 140.0, 1200.0)
    assert per_rule.filter(rule="deception_probes")["gpu_s"][0] == 0.0
    assert L.measured_rates(jobs) == {
        "deception_generate": 100.0,
        "deception_probes": 20.0,
        "steering_adapters": 70.0,
    }


def test_estimate_uses_configured_then_measured_rates_and_names_unknown_rules():
    plan = L.estimate(
        {"deception_generate": 4, "deception_probes": 2, "steering_eval": 3},
        gpu={"deception_generate", "steering_eval"},
        configured={"deception_generate": 900.0},
        measured={"deception_generate": 10.0, "deception_probes": 36.0},
    )
    rows = {r["rule"]: r for r in plan.iter_rows(named=True)}
    assert rows["deception_generate"]["source"] == "configured"
    assert rows["deception_generate"]["gpu_hours"] == pytest.approx(1.0)  # 4 x 900 s
    assert rows["deception_probes"]["cpu_hours"] == pytest.approx(0.02)  # 2 x 36 s
    assert rows["deception_probes"]["gpu_hours"] == 0.0
    assert rows["steering_eval"]["source"] == "unknown"
    assert rows["steering_eval"]["gpu_hours"] is None  # not guessed


def test_gpu_rules_are_read_from_the_workflow():
    gpu = L.gpu_rules(REPO / "workflow/rules")
    assert {"deception_generate", "tribunal_generate", "steering_adapters"} <= gpu
    assert {"inoculation_train", "deception_quant_transfer"} <= gpu
    assert not {"deception_probes", "deception_prompts", "tribunal_probes"} & gpu


@pytest.mark.e2e
def test_estimate_command_plans_a_preset_without_running_it(tmp_path, monkeypatch, capsys):
    work = copy_repo(tmp_path / "w")
    monkeypatch.chdir(work)
    rates = tmp_path / "rates.yaml"
    rates.write_text("deception_generate: 1800\n")
    preset = "config/studies/deception_qwen2.5-7b.yaml"
    L.main(["estimate", "--configfile", preset, "--rates", str(rates)])
    out = capsys.readouterr().out
    assert "deception_generate" in out and "configured" in out
    assert "0.50 GPU hours" in out  # one generate job at the configured 1800 s
    assert not (work / "results").exists()  # planned, nothing run
