"""interpflow.ledger: per-rule and per-instance costs from benchmark files, plan estimates."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import REPO, copy_repo, write_config

from interpflow import ledger as L
from interpflow.artifacts import DEVICE_LINE
from interpflow.sizing import known_instances, model_params

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


def _log(path, device):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"loading...\n{DEVICE_LINE.format(device=device)}\n")


RULES = {"deception_generate", "deception_probes", "steering_adapters", "atlas"}
RULES |= {"inoculation_em", "inoculation_em_train", "inoculation_data"}


def test_a_benchmark_file_is_filed_under_its_rule_and_job(tmp_path):
    root = tmp_path / "benchmarks/results"
    _bench(root / "atlas/smollm2/atlas.tsv", (45.0, 800.0, 11.0))
    _bench(root / "inoculation/x/em/train/r1.tsv", (5.0, 1.0, 1.0))
    _bench(root / "inoculation/x/em/em.tsv", (6.0, 1.0, 1.0))
    _bench(root / "inoculation/x/data/ds.tsv", (7.0, 1.0, 1.0))
    _log(tmp_path / "logs/atlas/smollm2.log", "cuda (NVIDIA H100)")
    jobs = L.read_benchmarks(root, logs=tmp_path / "logs", rules=RULES)
    got = {(r["study"], r["instance"], r["rule"], r["job"], r["device"]) for r in jobs.to_dicts()}
    assert got == {
        ("atlas", "smollm2", "atlas", "atlas", "cuda"),  # logs/atlas/<model>.log
        ("inoculation", "x", "inoculation_em_train", "r1", None),  # no log: not recorded
        ("inoculation", "x", "inoculation_em", "em", None),
        ("inoculation", "x", "inoculation_data", "ds", None),
    }


def test_ledger_counts_gpu_seconds_only_for_jobs_that_ran_on_a_gpu(bench):
    logs = bench.parents[1] / "logs"
    _log(logs / "deception/a/generate.log", "cuda (NVIDIA H100 80GB HBM3)")
    _log(logs / "deception/a/probes.log", "cpu")
    _log(logs / "steering/b/adapters/lora.log", "cuda")
    _log(logs / "steering/b/adapters/dora.log", "cpu")  # a GPU rule run on a CPU
    jobs = L.read_benchmarks(bench, logs=logs, rules=RULES)
    assert jobs.height == 4
    assert set(jobs["rule"]) == {"deception_generate", "deception_probes", "steering_adapters"}
    per_rule, per_instance = L.ledger(jobs, gpu={"deception_generate", "steering_adapters"})
    a = per_instance.filter(study="deception").row(0, named=True)
    assert (a["jobs"], a["wall_s"], a["cpu_s"], a["gpu_s"], a["max_rss_mb"]) == (
        2, 120.0, 180.0, 100.0, 900.0
    )  # fmt: skip
    b = per_rule.filter(rule="steering_adapters").row(0, named=True)
    assert (b["jobs"], b["gpu_jobs"], b["wall_s"], b["gpu_s"]) == (2, 1, 140.0, 60.0)
    assert b["cpu_s"] == 240.0
    assert per_rule.filter(rule="deception_probes")["gpu_s"][0] == 0.0


def test_a_cpu_only_run_has_no_gpu_seconds(bench):
    logs = bench.parents[1] / "logs"
    for log in ("deception/a/generate", "deception/a/probes", "steering/b/adapters/lora"):
        _log(logs / f"{log}.log", "cpu")  # dora: a log from before the line (unrecorded)
    jobs = L.read_benchmarks(bench, logs=logs, rules=RULES)
    _, per_instance = L.ledger(jobs, gpu={"deception_generate", "steering_adapters"})
    assert per_instance["gpu_s"].to_list() == [0.0, 0.0]
    assert per_instance["gpu_jobs"].to_list() == [0, 0]
    assert per_instance["cpu_s"].to_list() == [180.0, 240.0]  # the CPU time is in cpu_s


def test_log_to_ends_the_log_with_the_device_the_job_ran_on(tmp_path, monkeypatch):
    import sys
    import types

    from interpflow.artifacts import log_to

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with log_to(tmp_path / "cpu.log"):
        print("work")
    assert L.ran_on(tmp_path / "cpu.log") == "cpu"
    cuda = types.SimpleNamespace(is_initialized=lambda: True, get_device_name=lambda: "GPU X")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    with log_to(tmp_path / "gpu.log"):
        print("work")
    assert (tmp_path / "gpu.log").read_text().splitlines()[-1] == "interpflow: ran on cuda (GPU X)"
    assert L.ran_on(tmp_path / "gpu.log") == "cuda"
    assert L.ran_on(tmp_path / "missing.log") is None

    def broken():
        raise RuntimeError("CUDA error: device-side assert triggered")

    cuda.get_device_name = broken  # a job that failed on the GPU: still recorded, no new error
    before = sys.stdout
    with pytest.raises(ValueError, match="the job's own"), log_to(tmp_path / "failed.log"):
        raise ValueError("the job's own error")
    assert L.ran_on(tmp_path / "failed.log") == "cuda"
    assert sys.stdout is before  # restored


SMOL = {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30}
SMOL |= {"intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True}
SMOL |= {"num_attention_heads": 9, "num_key_value_heads": 3}
QWEN7 = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584}
QWEN7 |= {"intermediate_size": 18944, "num_attention_heads": 28, "num_key_value_heads": 4}
QWEN7 |= {"vocab_size": 152064, "tie_word_embeddings": False}


def test_a_models_size_is_read_from_its_config_json_else_its_stated_shape(tmp_path):
    models = tmp_path / "results/models"
    hub = {"source": "Qwen/Qwen2.5-7B-Instruct", "shape": QWEN7}
    assert model_params(name="q", decl=hub, models_dir=models) == 7_615_616_512
    standin = hub | {"standin": "qwen2"}  # smaller than the model it stands for: not its shape
    assert model_params(name="q", decl=standin, models_dir=models) is None
    (models / "q").mkdir(parents=True)
    (models / "q/config.json").write_text(json.dumps(SMOL))  # the stand-in, once built
    assert model_params(name="q", decl=standin, models_dir=models) == 134_515_008
    packaged = {"source": "smollm2"}
    assert model_params(name="smol", decl=packaged, models_dir=models) is None  # not built
    (models / "smollm2").mkdir()
    (models / "smollm2/config.json").write_text(json.dumps(SMOL))
    assert model_params(name="smol", decl=packaged, models_dir=models) == 134_515_008


@pytest.fixture
def tree(tmp_path):
    """A base config (instance small on smollm2, max_new_tokens 16), a preset (big on the 7B,
    96 tokens, by its shape), a preset dir holding a 7B instance measured before (old7b, 96
    tokens) and benchmarks of those and of an instance no config declares (mine)."""
    (tmp_path / "results/models/smollm2").mkdir(parents=True)
    (tmp_path / "results/models/smollm2/config.json").write_text(json.dumps(SMOL))
    models = {"smollm2": {"source": "smollm2"}}
    write_config(
        tmp_path / "config.yaml",
        {
            "models": models,
            "deception": {
                "small": {"model": {"name": "smollm2"}, "generation": {"max_new_tokens": 16}}
            },
        },
    )
    q7 = {"qwen7": {"source": "Qwen/Qwen2.5-7B-Instruct", "shape": QWEN7}}
    big = {"model": {"name": "qwen7"}, "generation": {"max_new_tokens": 96}}
    write_config(tmp_path / "preset.yaml", {"models": q7, "deception": {"big": big}})
    (tmp_path / "studies").mkdir()
    write_config(tmp_path / "studies/old.yaml", {"models": q7, "deception": {"old7b": big}})
    root = tmp_path / "benchmarks/results/deception"
    _bench(root / "small/generate.tsv", (30.0, 1.0, 30.0))
    _bench(root / "small/probes.tsv", (4.0, 1.0, 4.0))
    _bench(root / "mine/generate.tsv", (99999.0, 1.0, 1.0))  # a config of my own
    return tmp_path


def _known(tree, *configfiles):
    return known_instances(
        configfiles=[tree / f for f in configfiles],
        presets_dir=tree / "studies",
        base=tree / "config.yaml",
        schemas=REPO / "workflow/schemas",
        models_dir=tree / "results/models",
    )


def _measured(tree, known):
    jobs = L.read_benchmarks(tree / "benchmarks/results", logs=tree / "logs", rules=RULES)
    return L.measurements(jobs, known=known)


def test_instances_not_in_any_known_config_are_no_measurement(tree):
    known = _known(tree, "preset.yaml")
    assert known[("deception", "big")].params == 7_615_616_512  # from the preset's shape
    assert known[("deception", "small")].params == 134_515_008  # from config.json
    assert known[("deception", "big")].tokens["deception_generate"] == 96
    assert ("deception", "mine") not in known
    assert 99999.0 not in _measured(tree, known)["seconds"].to_list()


def test_a_rate_scaled_from_another_model_is_the_stated_formula(tree):
    known = _known(tree, "preset.yaml")
    rate, source = L.rate_for(
        rule="deception_generate",
        target=known[("deception", "big")],
        measured=_measured(tree, known),
    )
    assert rate == pytest.approx(30.0 * (7_615_616_512 / 134_515_008) * (96 / 16))
    assert source == "scaled from smollm2 (135M) by params x tokens (generation.max_new_tokens)"
    rate, source = L.rate_for(
        rule="deception_probes", target=known[("deception", "big")], measured=_measured(tree, known)
    )
    assert rate == pytest.approx(4.0 * 7_615_616_512 / 134_515_008)
    assert source == "scaled from smollm2 (135M) by params"  # no token budget


def test_a_rate_measured_on_the_same_model_beats_another_models(tree):
    _bench(tree / "benchmarks/results/deception/old7b/generate.tsv", (600.0, 1.0, 1.0))
    _log(tree / "logs/deception/old7b/generate.log", "cuda")
    known = _known(tree, "preset.yaml")
    rate, source = L.rate_for(
        rule="deception_generate",
        target=known[("deception", "big")],
        measured=_measured(tree, known),
    )
    assert (rate, source) == (600.0, "measured on qwen7 (7.6B, cuda)")


def test_the_ledger_keeps_only_the_instances_of_the_config(tree, monkeypatch, capsys):
    monkeypatch.chdir(tree)
    (tree / "config").mkdir()
    (tree / "config.yaml").rename(tree / "config/config.yaml")
    (tree / "workflow").mkdir()
    (tree / "workflow/schemas").symlink_to(REPO / "workflow/schemas")
    (tree / "workflow/rules").symlink_to(REPO / "workflow/rules")
    L.main([])
    out = capsys.readouterr().out
    assert "small" in out and "mine" not in out and "99999" not in out
    L.main(["--configfile", "preset.yaml"])  # a preset means exactly its instances
    out = capsys.readouterr().out
    assert "small" not in out and "mine" not in out
    jobs = L.read_benchmarks("benchmarks/results", rules=RULES)
    assert L.only_instances(jobs, keys=set()).height == 0  # a config of no instance


def test_estimate_prices_each_row_and_names_its_source(tree):
    known = _known(tree, "preset.yaml")
    plan = pl.DataFrame(
        [
            ("deception_generate", "deception", "big", 2),
            ("deception_probes", "deception", "big", 1),
            ("deception_labels", "deception", "big", 1),
        ],
        schema=["rule", "study", "instance", "jobs"],
        orient="row",
    )
    table = L.estimate(
        plan,
        gpu={"deception_generate"},
        known=known,
        measured=_measured(tree, known),
        configured={"deception_probes": 36.0},
        rates_name="cluster.yaml",
    )
    rows = {r["rule"]: r for r in table.iter_rows(named=True)}
    gen = rows["deception_generate"]
    assert gen["gpu_hours"] == pytest.approx(2 * gen["seconds_per_job"] / 3600)
    assert gen["source"].startswith("scaled from smollm2") and gen["size"] == "7.6B"
    assert rows["deception_probes"]["source"] == "configured (cluster.yaml)"
    assert rows["deception_probes"]["cpu_hours"] == pytest.approx(0.01)
    assert rows["deception_labels"]["source"] == "unknown"
    assert rows["deception_labels"]["cpu_hours"] is None  # not guessed


def test_a_misspelt_rule_in_the_rates_file_is_an_error_with_the_closest_names():
    with pytest.raises(ValueError, match="closest: deception_generate") as e:
        L.check_rates(
            {"deception_generate": 10, "deception_genrate": 900},
            rules={"deception_generate", "deception_probes", "tribunal_generate"},
            plan_rules={"deception_generate", "deception_probes"},
            source="rates file r.yaml",
        )
    assert "'deception_genrate'" in str(e.value)
    assert "this plan's rules: deception_generate, deception_probes" in str(e.value)
    rates = {"tribunal_generate": 5}  # a rule of the workflow outside this plan: fine
    assert L.check_rates(rates, rules={"tribunal_generate"}, plan_rules=set(), source="r") == {
        "tribunal_generate": 5.0
    }


DRY_RUN = """\
rule deception_generate:
    input: results/models/stub
    log: logs/deception/a/generate.log
    benchmark: benchmarks/results/deception/a/generate.tsv
    wildcards: instance=a
    resources: tmpdir=/tmp, gpu=1
rule deception_generate:
    log: logs/deception/b/generate.log
    benchmark: benchmarks/results/deception/b/generate.tsv
    wildcards: instance=b
localrule all:
    input: x
    jobid: 0
Job stats:
job                   count
------------------  -------
deception_generate        2
all                       1
total                     3

"""


def test_a_dry_runs_jobs_are_counted_per_rule_and_instance():
    plan = L.plan_table(DRY_RUN)
    assert plan.rows() == [
        ("all", "all", "", 1),
        ("deception_generate", "deception", "a", 1),
        ("deception_generate", "deception", "b", 1),
    ]
    with pytest.raises(ValueError, match="do not add up"):
        L.plan_table(DRY_RUN.replace("deception_generate        2", "deception_generate        3"))


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
    assert "deception_generate" in out and "configured (rates.yaml)" in out
    assert "0.50 GPU hours" in out  # one generate job at the configured 1800 s
    assert not (work / "results").exists()  # planned, nothing run
