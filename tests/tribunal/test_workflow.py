"""End-to-end runs of the tribunal study (seed 002) through real snakemake on the stub model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import OFFLINE_ENV, copy_repo, job_counts, snakemake, write_config
from safetensors.numpy import load_file
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.e2e
OUT = "results/tribunal/default"
TARGETS = (
    f"{OUT}/labels.summary.json",
    f"{OUT}/metrics.json",
    f"{OUT}/probe_results.png",
    f"{OUT}/implicit_value_directions.json",
)
RULES = (
    "tribunal_prompts",
    "tribunal_generate",
    "tribunal_labels",
    "tribunal_probes",
    "tribunal_findings",
)


@pytest.fixture(scope="module")
def tribunal_run(all_run, tmp_path_factory):
    """A copy of the session's shared `snakemake all` run (tribunal included): a test here
    swaps in hand-made traces, so it must not change the shared workdir."""
    src, seconds = all_run
    work = tmp_path_factory.mktemp("tribunal") / "work"
    shutil.copytree(src, work, symlinks=True)  # copy2: mtimes kept, nothing looks stale
    return work, seconds


def test_default_config_plans_tribunal_in_all(tmp_path):
    work = copy_repo(tmp_path)
    proc = snakemake(work, "-n", "all", check=False, env=OFFLINE_ENV)
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    for rule in RULES:
        assert counts[rule] == 1, rule


def test_stub_run_labels_honestly_and_skips_the_probe(tribunal_run):
    """The random stub never answers: every trace is unparseable (counted), the probe stage
    writes all its files with status 'skipped' and the reason."""
    work, seconds = tribunal_run
    res = work / OUT
    prompts = pl.read_parquet(res / "prompts.parquet")
    assert prompts.height == 24 and prompts["problem_id"].n_unique() == 12  # 2 samples x 12
    gens = pl.read_parquet(res / "generations.parquet")
    assert gens["prompt_id"].to_list() == prompts["prompt_id"].to_list()
    acts = pl.read_parquet(res / "activations.parquet")
    assert sorted(acts["layer"].unique().to_list()) == [1, 2, 3]
    assert set(acts["position"]) == {"response_mean", "last_response"}
    prov = json.loads((res / "activations.parquet.provenance.json").read_text())
    assert prov["n_shards"] == 3 and prov["n_shards_used"] == 3 and not prov["stopped_early"]
    assert prov["sampling"]["temperature"] == 1.0

    summary = json.loads((res / "labels.summary.json").read_text())
    counts = summary["counts"]
    assert summary["n_traces"] == 24
    assert counts["correct"] + counts["incorrect"] + counts["unparseable"] == 24
    labels = pl.read_parquet(res / "labels.parquet")
    assert labels.height == 24 and set(labels["label"]) <= {"correct", "incorrect", "unparseable"}

    # what the random stub gives: no trace answers, so no class to train on
    assert counts == {
        "correct": 0,
        "incorrect": 0,
        "unparseable": 24,
        "probe_correct": 0,
        "probe_incorrect": 0,
        "probe_dropped": 24,
    }
    assert labels["label"].to_list() == ["unparseable"] * 24
    assert labels["probe_label"].null_count() == 24
    metrics = json.loads((res / "metrics.json").read_text())
    assert metrics["status"] == "skipped" and metrics["probes"] is None and metrics["best"] is None
    assert metrics["counts"] == counts
    assert metrics["reason"] == (
        "no correct and no incorrect traces to train on (counts: 0 correct, 0 incorrect, "
        "24 unparseable; 24 dropped from the probe)"
    )
    directions = json.loads((res / "implicit_value_directions.json").read_text())
    assert directions["directions"] == {} and directions["status"] == "skipped"
    assert load_file(str(res / "implicit_value_directions.safetensors")) == {}
    assert pl.read_csv(res / "probe_results.csv").height == 0
    assert pl.read_parquet(res / "probe_logits.parquet").height == 0
    assert (res / "probe_results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for log in ("prompts", "generate", "labels", "probes"):
        assert (work / "logs/tribunal/default" / f"{log}.log").exists(), log
    print(f"all (tribunal included) on stub: {seconds:.1f}s")


def test_hand_made_traces_with_both_classes_reach_probes_and_directions(tribunal_run):
    """A hand-made generations table (answers written from the gold: both classes plus one
    unparseable trace) replaces the stub's; snakemake relabels and refits without sampling
    again. The activations stay the stub's, so the scores mean nothing; the code paths run."""
    work, _ = tribunal_run
    res = work / OUT
    prompts = pl.read_parquet(res / "prompts.parquet")
    gens = pl.read_parquet(res / "generations.parquet")
    problems = sorted(prompts["problem_id"].unique().to_list())
    right = {p: i % 2 == 0 for i, p in enumerate(problems)}
    responses = []
    for i, row in enumerate(prompts.iter_rows(named=True)):
        if i == 5:
            responses.append("<think>hmm, I am not sure</think> I cannot tell.")
        elif right[row["problem_id"]]:
            responses.append(f"<think>compute</think>\nThe answer is \\boxed{{{row['gold']}}}.")
        else:
            responses.append(f"Step 1 ...\n#### {row['gold']}1")  # e.g. 29 -> 291: wrong
    hand = gens.with_columns(pl.Series("response", responses))
    hand.write_parquet(res / "generations.parquet")

    proc = snakemake(work, *TARGETS, "--rerun-triggers", "mtime")
    ran = job_counts(proc.stdout + proc.stderr)  # (the memory table names every GPU rule)
    assert "tribunal_labels" in ran and "tribunal_probes" in ran
    assert "tribunal_generate" not in ran  # the hand-made traces are not resampled

    summary = json.loads((res / "labels.summary.json").read_text())
    assert summary["counts"]["unparseable"] == 1 and summary["counts"]["probe_dropped"] == 1
    assert summary["counts"]["correct"] + summary["counts"]["incorrect"] == 23
    assert summary["counts"]["correct"] >= 10 and summary["counts"]["incorrect"] >= 10
    by = summary["by_method"]
    assert by["none"] == 1 and by["boxed"] == summary["counts"]["correct"]
    assert by["hashes"] == summary["counts"]["incorrect"]

    metrics = json.loads((res / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["reason"] is None
    keys = {f"L{layer}.{agg}" for layer in (1, 2, 3) for agg in ("response_mean", "last_response")}
    assert set(metrics["probes"]) == keys
    logits = pl.read_parquet(res / "probe_logits.parquet")
    table = pl.read_csv(res / "probe_results.csv")
    for key, p in metrics["probes"].items():
        at = (pl.col("layer") == p["layer"]) & (pl.col("aggregation") == p["aggregation"])
        train = logits.filter(at & (pl.col("split") == "train"))
        test = logits.filter(at & (pl.col("split") == "test"))
        assert (train.height, test.height) == (p["n_train"], p["n_test"]), key
        # the logit is the log-odds of "correct": its sign is the probe's prediction
        y, logit = test["label"].to_numpy(), test["logit"].to_numpy()
        m = p["metrics"]
        assert m["accuracy"] == pytest.approx(np.mean((logit > 0) == (y == "correct"))), key
        assert m["auroc"] == pytest.approx(roc_auc_score(y == "correct", logit)), key
        assert m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1], key
        values, counts = np.unique(train["label"].to_numpy(), return_counts=True)
        assert p["majority"]["class"] == values[counts.argmax()], key  # train's most frequent
        assert p["majority"]["accuracy"] == pytest.approx(np.mean(y == p["majority"]["class"]))
        reported = dict(table.filter(at).select("metric", "value").rows())
        expected = {"accuracy": m["accuracy"], "auroc": m["auroc"]}
        expected["majority_accuracy"] = p["majority"]["accuracy"]
        # each control's AUROC beside the probe's (form and lexical here: no random-init copy)
        expected |= {f"{n}_auroc": c["auroc"] for n, c in p["controls"].items()}
        assert reported == pytest.approx(expected), key
    assert metrics["n_train_problems"] + metrics["n_test_problems"] == 12
    assert metrics["best"]["probe"] in keys

    tensors = load_file(str(res / "implicit_value_directions.safetensors"))
    assert set(tensors) == {
        f"{k}.{t}" for k in keys for t in ("direction", "mean_correct", "mean_incorrect")
    }
    assert all(abs(float((tensors[f"{k}.direction"] ** 2).sum()) - 1) < 1e-4 for k in keys)
    directions = json.loads((res / "implicit_value_directions.json").read_text())
    assert len(directions["directions"]["2"]["response_mean"]["direction"]) == 64  # stub d_model

    # 3 layers x 2 aggregations x (accuracy, auroc, majority_accuracy + the form and lexical
    # controls' AUROC)
    assert table.height == 3 * 2 * 5
    assert (
        logits.height == 23 * 6
        and logits.group_by("problem_id").agg(pl.col("split").n_unique())["split"].max() == 1
    )
    assert (res / "probe_results.png").stat().st_size > 10_000


def test_preset_dry_runs_offline(tmp_path):
    work = copy_repo(tmp_path)
    preset = "config/studies/tribunal_r1.yaml"
    # before the one-time fetch: the plan stops, naming the key and the fetch command
    args = ("-n", "all", "--configfile", preset)
    proc = snakemake(work, *args, check=False, env=OFFLINE_ENV, timeout=120)
    assert proc.returncode != 0
    assert (
        "config key tribunal.r1-7b.problems.source: file data/tribunal/openai_gsm8k_test.jsonl"
        in (proc.stdout + proc.stderr)
    )
    # a hub id in the key: the command that fetches it once
    hub = tmp_path / "hub.yaml"  # layered over the preset's instance: an overlay
    hub.write_text(
        "# interpflow: overlay\n"
        + yaml.safe_dump({"tribunal": {"r1-7b": {"problems": {"source": "openai/gsm8k"}}}})
    )
    proc = snakemake(work, *args, str(hub), check=False, env=OFFLINE_ENV, timeout=120)
    assert "python -m interpflow.hubdata openai/gsm8k --config main --split test" in (
        proc.stdout + proc.stderr
    )
    (work / "data/tribunal").mkdir(parents=True)
    shutil.copy(
        work / "resources/tribunal/gsm8k_sample.jsonl",
        work / "data/tribunal/openai_gsm8k_test.jsonl",
    )
    proc = snakemake(work, *args, check=False, env=OFFLINE_ENV, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = job_counts(proc.stdout)
    assert "models_stub" not in counts  # a hub model: nothing to build
    for rule in RULES:
        assert counts[rule] == 1, rule
    # a preset means exactly the instances it declares: one tribunal instance, nothing else;
    # its pre_answer aggregation is read by rule tribunal_tokens
    assert counts["tribunal_tokens"] == 1
    assert set(counts) == {*RULES, "tribunal_tokens", "findings", "all", "total"}, counts
    assert "results/tribunal/r1-7b/metrics.json" in proc.stdout
    assert "results/tribunal/default/" not in proc.stdout
    print("preset jobs:", counts)


def test_smollm2_preset_plans_the_random_init_control(tmp_path):
    """probes.control: the random-init copy is built and re-reads the traces (tribunal_control),
    and the probes wait for it."""
    work = copy_repo(tmp_path)
    preset = "config/studies/tribunal_smollm2.yaml"
    proc = snakemake(work, "-n", "all", "--configfile", preset, check=False, env=OFFLINE_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = job_counts(proc.stdout)
    assert set(counts) == {
        *RULES,
        "tribunal_control",
        "models_packaged",
        "models_random_init",
        "findings",
        "all",
        "total",
    }, counts
    assert "results/tribunal/smollm2/control/activations.parquet" in proc.stdout
    assert "results/models/smollm2-random" in proc.stdout


def test_unknown_control_model_fails_at_planning(tmp_path):
    work = copy_repo(tmp_path)
    cfg = write_config(
        work / "bad.yaml", {"tribunal": {"default": {"probes": {"control": "nope"}}}}
    )
    proc = snakemake(work, "-n", *TARGETS, "--configfile", str(cfg), check=False, env=OFFLINE_ENV)
    assert proc.returncode != 0
    assert "tribunal.default.probes.control" in proc.stdout + proc.stderr


def test_missing_problems_file_fails_at_planning(tmp_path):
    work = copy_repo(tmp_path)
    cfg = write_config(
        work / "bad.yaml",
        {"tribunal": {"default": {"problems": {"source": "resources/tribunal/nope.jsonl"}}}},
    )
    proc = snakemake(work, "-n", *TARGETS, "--configfile", str(cfg), check=False, env=OFFLINE_ENV)
    assert proc.returncode != 0
    assert "resources/tribunal/nope.jsonl" in proc.stdout + proc.stderr
    assert "tribunal.default.problems.source" in proc.stdout + proc.stderr


def test_unknown_aggregation_fails_at_planning_naming_the_key(tmp_path):
    """An aggregation that is no position spec (sequence_mean, seed 002's prompt + trace mean,
    is one) stops planning with one error naming capture.aggregations."""
    work = copy_repo(tmp_path)
    aggs = ["sequence_mean", "middle_token"]
    cfg = write_config(
        work / "bad.yaml", {"tribunal": {"default": {"capture": {"aggregations": aggs}}}}
    )
    proc = snakemake(work, "-n", *TARGETS, "--configfile", str(cfg), check=False, env=OFFLINE_ENV)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert (
        "config key tribunal.default.capture.aggregations: unknown position 'middle_token'" in out
    )


def test_unknown_tribunal_key_is_rejected(tmp_path):
    work = copy_repo(tmp_path)
    cfg = write_config(
        work / "bad.yaml", {"tribunal": {"default": {"stopping": {"max_attempt": 3}}}}
    )
    proc = snakemake(work, "-n", *TARGETS, "--configfile", str(cfg), check=False, env=OFFLINE_ENV)
    assert proc.returncode != 0 and "max_attempt" in proc.stdout + proc.stderr


def test_a_sweep_plans_one_instance_per_point_apart(tmp_path):
    """Instances of a sweep each get their own jobs and results/tribunal/<instance>/."""
    work = copy_repo(tmp_path)
    cfg = write_config(
        work / "sweep.yaml",
        {
            "tribunal": {
                "c": {
                    "model": {"name": "stub"},
                    "capture": {"layers": [1, 2, 3]},  # the 4-layer stub's
                    "sweep": {"probes.C": [0.5, 2.0]},
                }
            }
        },
    )
    proc = snakemake(work, "-n", "all", "--configfile", str(cfg), check=False, env=OFFLINE_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = job_counts(proc.stdout)
    for rule in RULES:
        assert counts[rule] == 2, rule
    for name in ("c-C0.5", "c-C2.0"):
        assert f"results/tribunal/{name}/metrics.json" in proc.stdout, name
    assert "results/tribunal/default/" not in proc.stdout
