"""End-to-end runs of the deception study on the stub model (real snakemake, real
subprocesses): results/deception/<instance>/, the card's one-target command, a killed
generation resumed, the judge stage against a local OpenAI-compatible server."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import time

import joblib
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import SNAKEMAKE, copy_repo, job_counts, snakemake, write_config
from sklearn.metrics import confusion_matrix

from interpflow.fakeapi import FakeAPIServer
from interpflow.probes import MLPProbe, load_probe_dataset

pytestmark = pytest.mark.e2e


def test_all_on_stub(all_run):
    work, seconds = all_run
    res = work / "results/deception/default"
    prompts = json.loads((res / "prompts.summary.json").read_text())
    assert prompts["n_duplicates_removed"] == 0 and prompts["n_prompts"] == 270
    gens = pl.read_parquet(res / "generations.parquet")
    assert gens.height == prompts["n_prompts"]
    prov = json.loads((res / "activations.parquet.provenance.json").read_text())
    assert prov["capture"]["layers"] == [1, 2, 3]
    assert prov["packages"]["transformers"] == importlib.metadata.version("transformers")
    metrics = json.loads((res / "probes/metrics.json").read_text())
    classes = ["deceptive", "eval_aware", "normal"]
    assert (res / "probes/label_classes.txt").read_text().split() == metrics["classes"] == classes
    assert metrics["n_train_prompts"] + metrics["n_test_prompts"] == prompts["n_prompts"]
    # the saved probes, on the saved test rows, give the reported numbers
    ds = load_probe_dataset(
        res / "activations.parquet",
        pl.read_parquet(res / "labels.parquet"),
        metrics["target"],
        metrics["layer"],
        metrics["positions"],
    )
    test = np.load(res / "probes/test_indices.npy")
    train = np.load(res / "probes/train_indices.npy")
    assert (test.size, train.size) == (metrics["n_test_rows"], metrics["n_train_rows"])
    assert not set(ds.groups[test]) & set(ds.groups[train])  # split by prompt
    probes = {
        "logreg": joblib.load(res / "probes/logreg.joblib"),
        "mlp": MLPProbe.load(res / "probes/mlp.safetensors", res / "probes/mlp.json"),
    }
    for name, probe in probes.items():
        m = metrics["probes"][name]
        pred = probe.predict(ds.X[test])
        assert m["accuracy"] == pytest.approx(np.mean(pred == ds.y[test])), name
        cm = confusion_matrix(ds.y[test], pred, labels=classes)
        assert m["confusion"] == cm.tolist(), name
        table = pl.read_csv(res / f"probes/confusion_{name}.csv")  # the figure's numbers
        np.testing.assert_array_equal(table.drop("true").to_numpy(), cm)
        assert [m["per_class"][c]["support"] for c in classes] == cm.sum(axis=1).tolist()
        assert m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1], name
    majority = metrics["baselines"]["majority"]  # the train set's most frequent class
    values, counts = np.unique(ds.y[train], return_counts=True)
    assert majority["class"] == values[counts.argmax()]
    assert majority["accuracy"] == pytest.approx(np.mean(ds.y[test] == majority["class"]))
    nla = pl.read_parquet(res / "labels_nla.parquet")
    assert set(nla["layer"]) == {metrics["layer"]} and nla["nla_text"].null_count() == 0
    table = pl.read_csv(res / "labels_nla.category.csv")  # one count per verbalizer text
    assert table.filter(pl.col("table") == "verbalizer_label")["total"].sum() == nla.height
    assert (res / "labels_nla.category.md").stat().st_size > 0
    sweep = pl.read_csv(res / "layer_sweep.csv")
    assert sorted(sweep["layer"].unique().to_list()) == [1, 2, 3]
    for f in (
        "logreg.joblib",
        "logreg.safetensors",
        "logreg.json",
        "mlp.safetensors",
        "mlp.json",
        "label_classes.txt",
        "train_indices.npy",
        "test_indices.npy",
        "metrics.json.provenance.json",
        "confusion_logreg.png",
        "confusion_logreg.csv",
        "confusion_mlp.png",
        "confusion_mlp.csv",
    ):
        assert (res / "probes" / f).stat().st_size > 0, f
    assert (res / "layer_sweep.png").stat().st_size > 0
    assert (work / "logs/models/stub.log").exists()
    for stage in ("prompts", "generate", "labels", "verbalize", "probes", "layer_sweep"):
        assert (work / "logs/deception/default" / f"{stage}.log").exists(), stage
    assert not (work / "results/probes").exists()  # the card's copy only when asked for
    print(f"all on stub: {seconds:.1f}s")


def test_transfer_on_stub(all_run):
    """Rule deception_transfer on the stub: the bank-trained probe and text baselines read on
    the held-out bank prompts reproduce the probes stage's own numbers (the same split, the
    same fitted baselines), and each shipped evaluation set gets its matrix rows and one
    findings row."""
    work, _ = all_run
    res = work / "results/deception/default"
    probes = json.loads((res / "probes/metrics.json").read_text())
    transfer = json.loads((res / "transfer/metrics.json").read_text())
    assert list(transfer["sets"]) == ["in_distribution", "instructed", "roleplay"]
    same = transfer["sets"]["in_distribution"]
    assert same["readers"]["probe"]["auroc"] == pytest.approx(probes["probes"]["logreg"]["auroc"])
    for base in ("lexical", "form"):
        assert same["readers"][base]["auroc"] == pytest.approx(probes["baselines"][base]["auroc"])
        margin = probes["probes"]["logreg"]["margins"][base]
        assert same["margins"][base]["auroc_ci"] == pytest.approx(margin["auroc_ci"])
    for name in ("instructed", "roleplay"):
        assert transfer["sets"][name]["n_prompts"] == 60
    assert transfer["control"]["n_prompts"] == 560
    matrix = pl.read_csv(res / "transfer/matrix.csv")
    assert matrix.height == 9 and set(matrix["reader"]) == {"probe", "lexical", "form"}
    assert (res / "transfer/matrix.png").stat().st_size > 0
    rows = json.loads((res / "findings.json").read_text())
    assert [r["metric"].rsplit(" ", 1)[-1] for r in rows[1:]] == ["instructed", "roleplay"]
    for row in rows[1:]:
        verdict = "holds" if row["holds"] else "does NOT hold"
        assert f"{verdict} out of distribution" in row["finding"]


def test_transfer_train_on_stub(all_run):
    """Rule deception_transfer_train on the stub: its ``bank`` variant is the transfer stage's
    probe (the same train rows, layer and positions) and reads each set at the same AUROC; every
    variant is read only on sets it did not train on; the layers variant concatenates the three
    captured layers and the response variant reads the response positions alone."""
    work, _ = all_run
    res = work / "results/deception/default"
    transfer = json.loads((res / "transfer/metrics.json").read_text())
    train = json.loads((res / "transfer_train/metrics.json").read_text())["variants"]
    assert sorted(train) == ["bank", "layers", "pooled", "pooled_layers", "response"]
    for name in ("instructed", "roleplay"):
        bank = train["bank"]["tests"][name]["readers"]["probe"]["auroc"]
        assert bank == pytest.approx(transfer["sets"][name]["readers"]["probe"]["auroc"])
        assert train["pooled"]["tests"][name]["train"] == [
            "bank",
            *({"instructed", "roleplay"} - {name}),
        ]
    assert train["layers"]["layers"] == [1, 2, 3]
    assert all(p.startswith("response") for p in train["response"]["positions"])
    for name in ("pooled", "layers", "response", "pooled_layers"):  # each beside the bank probe
        assert train[name]["tests"]["roleplay"]["over_reference"]["reference"] == "bank"
    table = pl.read_csv(res / "transfer_train/variants.csv")
    assert table.height == 10
    assert all(t not in tr.split("+") for t, tr in zip(table["test"], table["train"], strict=True))
    assert (res / "transfer_train/variants.png").stat().st_size > 0


def with_stub(work, stub_dir):
    """``work`` with the session's stub model in place: copied after the repository, so newer
    than its inputs, and snakemake does not build it again (the rule's output is identical)."""
    shutil.copytree(stub_dir, work / "results/models/stub")
    return work


def test_single_target_builds_only_its_upstream(stub_dir, tmp_path):
    """The model card's command, `snakemake results/probes/logreg.joblib`: the default
    instance's probe and its upstream, nothing else, copied to the card's path."""
    work = with_stub(copy_repo(tmp_path), stub_dir)
    proc = snakemake(work, "results/probes/logreg.joblib")
    upstream = (
        "deception_prompts",
        "deception_generate",
        "deception_labels",
        "deception_probes",
        "deception_card",
    )
    assert job_counts(proc.stdout + proc.stderr) == {**dict.fromkeys(upstream, 1), "total": 5}
    built = {p.name for p in (work / "results").iterdir()}
    assert built == {"models", "deception", "probes", "cache"}  # cache: the judge's replies
    assert [p.name for p in (work / "results/deception").iterdir()] == ["default"]
    res = work / "results/deception/default"
    stages = {"prompts", "generations", "activations", "labels"}
    assert {p.name.split(".")[0] for p in res.iterdir()} == stages | {"probes"}
    assert not list(res.glob("layer_sweep*")) and not (res / "labels_nla.parquet").exists()
    card = work / "results/probes/logreg.joblib"
    assert card.read_bytes() == (res / "probes/logreg.joblib").read_bytes()
    assert [p.name for p in card.parent.iterdir()] == ["logreg.joblib"]
    probe = joblib.load(card)
    assert probe.classes_.tolist() == ["deceptive", "eval_aware", "normal"]


def test_verbalizer_label_target_with_a_confidence_threshold(stub_dir, tmp_path):
    """probes.target verbalizer_label on the stub with the offline judges: the probes predict
    the per-prompt majority of the graded verbalizer texts, after dropping the rows whose
    confidence is under probes.min_label_confidence 0.5. The offline grader is 1/3 sure of
    "normal" (no keyword: a guess), so every normal row drops and the probes see two classes."""
    from collections import Counter

    work = with_stub(copy_repo(tmp_path), stub_dir)
    probes = {"target": "verbalizer_label", "min_label_confidence": 0.5}
    write_config(work / "vl.yaml", {"deception": {"default": {"probes": probes}}})
    target = "results/deception/default/probes/metrics.json"
    proc = snakemake(work, target, "--configfile", "vl.yaml")
    res = work / "results/deception/default"
    assert job_counts(proc.stdout + proc.stderr)["deception_verbalize"] == 1
    metrics = json.loads((res / "probes/metrics.json").read_text())
    labels = pl.read_parquet(res / "labels.parquet")
    assert labels["label_confidence"].null_count() == 0  # the offline grader always states one
    nla = pl.read_parquet(res / "labels_nla.parquet")
    low = nla.filter(pl.col("nla_label").is_not_null() & (pl.col("nla_confidence") < 0.5))
    assert set(low["nla_label"]) == {"normal"} and set(low["nla_confidence"]) == {0.33}
    expected = {}  # the vote, by hand: the confident rows' majority, a tie or nothing -> None
    for (pid,), sub in nla.filter(pl.col("nla_confidence") >= 0.5).group_by("prompt_id"):
        (top, n), *rest = Counter(sub["nla_label"].to_list()).most_common()
        expected[pid] = None if rest and rest[0][1] == n else top
    kept = {p for p, v in expected.items() if v is not None}
    assert metrics["target"] == "verbalizer_label"
    assert metrics["classes"] == sorted(set(expected.values()) - {None})
    assert metrics["classes"] == ["deceptive", "eval_aware"]
    assert metrics["n_train_prompts"] + metrics["n_test_prompts"] == len(kept)
    report = metrics["labels"]
    assert report["n_dropped_low_confidence_rows"] == low.height
    assert report["n_prompts_majority"] == len(kept) and report["min_label_confidence"] == 0.5
    test_ids = set(pl.read_parquet(res / "probes/test_proba.parquet")["prompt_id"])
    truth = pl.read_parquet(res / "probes/test_proba.parquet").select("prompt_id", "label")
    assert test_ids <= kept
    assert all(expected[p] == lab for p, lab in truth.iter_rows())


def test_generation_killed_midway_resumes_identically(stub_dir, tmp_path):
    """SIGKILL the generation job, rerun: same final files, at most one shard of work lost."""
    cfg = {"deception": {"default": {"generation": {"batch_size": 4, "shard_size": 16}}}}
    res = "results/deception/default"
    target = f"{res}/generations.parquet"
    ref = with_stub(copy_repo(tmp_path / "ref"), stub_dir)
    write_config(ref / "over.yaml", cfg)
    snakemake(ref, target, "--configfile", "over.yaml")

    work = with_stub(copy_repo(tmp_path / "killed"), stub_dir)
    write_config(work / "over.yaml", cfg)
    shards = work / f"{res}/generations.parquet.shards"
    proc = subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", target, "--configfile", "over.yaml"],
        cwd=work,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(shards.glob("*.generations.parquet"))) < 3:
        assert proc.poll() is None, "generation finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(shards.glob("*.generations.parquet")))
    assert 3 <= done_at_kill < 17 and not (work / target).exists()

    snakemake(work, target, "--unlock", "--configfile", "over.yaml")  # the kill left a lock
    snakemake(work, target, "--rerun-incomplete", "--configfile", "over.yaml")
    log = (work / "logs/deception/default/generate.log").read_text()
    resumed = int(log.split("resuming: ")[1].split("/")[0])
    assert resumed >= done_at_kill  # nothing finished before the kill is redone
    for name in ("generations", "activations"):
        a = pl.read_parquet(ref / f"{res}/{name}.parquet")
        b = pl.read_parquet(work / f"{res}/{name}.parquet")
        assert a.equals(b), name


def test_openai_judge_stage_against_local_server(all_run, tmp_path):
    """Labels through the official OpenAI client: failures give null labels and are counted,
    exactly; a forced rerun calls only for the failed ones; a wrong key (every call 401) stops
    the stage with one clear error; the key never lands in output, logs or artifacts."""
    from interpflow.deception.labels import grading_request, parse_label

    src, _ = all_run
    work = copy_repo(tmp_path)
    res = "results/deception/default"
    (work / res).mkdir(parents=True)
    (work / res / "generations.parquet").write_bytes(
        (src / res / "generations.parquet").read_bytes()
    )
    secret = "sk-test-SECRET-4242"

    def responder(req):
        text = req["messages"][-1]["content"]
        if "topic" in text.lower():
            return "I cannot decide"  # unparseable: counted, not guessed
        return "deceptive" if "lie" in text.lower() else "normal"

    def fails(text):  # every request about "cat" fails on every attempt
        return " cat" in text.lower()

    def plan(i, req):
        return "500" if fails(req["messages"][-1]["content"]) else "ok"

    # What the stage will send, so every count below is exact.
    gens = pl.read_parquet(work / res / "generations.parquet")
    classes = ["normal", "eval_aware", "deceptive"]  # the default deception.banks
    users = [grading_request(p, r, classes).user for p, r in zip(gens["prompt"], gens["response"])]
    n, n_unique = len(users), len(set(users))
    n_fail = sum(map(fails, users))
    n_fail_unique = sum(map(fails, set(users)))
    replies = {u: responder({"messages": [{"role": "user", "content": u}]}) for u in users}
    expected = [None if fails(u) else parse_label(replies[u], classes) for u in users]
    assert 1 <= n_fail <= 0.2 * n  # some failures, within the default max_failed_share
    retries = 1

    target = (f"{res}/labels.parquet", "--configfile", "gpt.yaml")
    env = {"OPENAI_API_KEY": secret}
    with FakeAPIServer(responder, plan=plan) as server:
        judge = {"backend": "openai", "model": "gpt-test", "base_url": server.url}
        judge |= {"max_retries": retries, "timeout_s": 5}
        cfg = {"judges": {"gpt": judge}, "deception": {"default": {"labels": {"judge": "gpt"}}}}
        write_config(work / "gpt.yaml", cfg)
        snakemake(work, *target, env=env)
        summary = json.loads((work / res / "labels.summary.json").read_text())
        labels = pl.read_parquet(work / res / "labels.parquet")
        assert labels["judge_label"].to_list() == expected
        assert summary["n_failed_calls"] == n_fail
        assert summary["n_unparseable"] == sum(e is None for e in expected) - n_fail
        assert summary["judge_stats"]["failures"] == {"HTTP 500 Internal Server Error": n_fail}
        # each distinct request once, each failing one 1 + max_retries times
        assert server.n_requests == summary["judge_stats"]["n_calls"]
        assert server.n_requests == n_unique + n_fail_unique * retries
        first = server.n_requests
        snakemake(work, *target, "--forcerun", "deception_labels", env=env)
        summary2 = json.loads((work / res / "labels.summary.json").read_text())
        # only the failed requests are sent again: successes come from the cache
        assert summary2["judge_stats"]["n_cache_hits"] == n - n_fail
        assert summary2["n_failed_calls"] == n_fail
        assert server.n_requests - first == summary2["judge_stats"]["n_calls"]
        assert summary2["judge_stats"]["n_calls"] == n_fail_unique * (1 + retries)

        # A wrong key: every call is rejected (401, not retried) and the stage stops.
        server.plan = "401"  # its body echoes the key it was sent
        for cache in (work / "results/cache").glob("judges.sqlite*"):
            cache.unlink()  # no cached replies: every request reaches the server
        before = server.n_requests
        proc = snakemake(work, *target, "--forcerun", "deception_labels", env=env, check=False)
        assert server.n_requests - before == n_unique
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        f"judge 'gpt' (openai model 'gpt-test'): {n} of {n} calls failed "
        f"(HTTP 401 Unauthorized: {n}), more than max_failed_share=0.2 allows; "
        "check the API key in OPENAI_API_KEY"
    ) in out, out
    assert "Incorrect API key provided: <redacted>" in out
    assert "SECRET-4242" not in out
    assert not (work / res / "labels.parquet").exists()  # no all-null table
    dirs = ("results", "logs", ".snakemake")
    files = [p for d in dirs for p in (work / d).rglob("*") if p.is_file()]
    assert (work / "logs/deception/default/labels.log") in files
    for path in files:
        assert b"SECRET-4242" not in path.read_bytes(), path


def _control_config(stub_dir, tmp_path, control):
    """A working copy with a preset of two deception instances on the stub's toy sizes:
    `real` on the stub, `random` on its random-init copy, `real`'s probes.control = control."""
    work = with_stub(copy_repo(tmp_path), stub_dir)
    default = yaml.safe_load((work / "config/config.yaml").read_text())["deception"]["default"]
    default["labels"]["verbalizer"]["enabled"] = False
    default["capture"]["positions"] = ["last_prompt"]  # one row per prompt in both instances
    real = copy.deepcopy(default)
    real["probes"]["control"] = control
    random = copy.deepcopy(default) | {"model": {**default["model"], "name": "stub-random"}}
    cfg = {
        "models": {"stub-random": {"source": "stub", "init": "random"}},
        "deception": {"real": real, "random": random},
    }
    return work, write_config(work / "control.yaml", cfg)


def test_random_init_control_margins(stub_dir, tmp_path):
    """probes.control: the instance's probes take the control's test-row probabilities and
    report each probe's paired margin over the control's same probe on the same test rows."""
    work, preset = _control_config(stub_dir, tmp_path, "random")
    snakemake(work, "results/deception/real/probes/metrics.json", "--configfile", preset.name)
    res = work / "results/deception"
    metrics = json.loads((res / "real/probes/metrics.json").read_text())
    control = json.loads((res / "random/probes/metrics.json").read_text())
    assert control["control"] is None and "control" not in control["probes"]["logreg"]["margins"]
    assert metrics["control"]["instance"] == "random"
    assert metrics["control"]["n_test_prompts"] == metrics["n_test_prompts"]
    assert metrics["control"]["n_test_rows"] == metrics["n_test_rows"]  # every row matched
    ours = pl.read_parquet(res / "real/probes/test_proba.parquet")
    theirs = pl.read_parquet(res / "random/probes/test_proba.parquet")
    assert set(ours["prompt_id"]) == set(theirs["prompt_id"])  # the same split
    for name, m in metrics["probes"].items():
        margin = m["margins"]["control"]
        assert margin["auroc"] == pytest.approx(m["auroc"] - control["probes"][name]["auroc"])
        assert margin["auroc_ci"][0] <= margin["auroc"] <= margin["auroc_ci"][1], name
        assert margin["n_bootstrap"] == metrics["n_bootstrap"], name


def test_unknown_control_fails_at_planning(stub_dir, tmp_path):
    work, preset = _control_config(stub_dir, tmp_path, "nope")
    proc = snakemake(work, "-n", "--configfile", preset.name, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key deception.real.probes.control: no deception instance 'nope'" in out
