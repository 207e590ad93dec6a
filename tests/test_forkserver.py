"""interpflow.forkserver: a snakemake script job handed to the server runs as it would in a
fresh interpreter (argv, cwd, environment, streams, exit status, signals), only without
importing torch again; with no server it runs where it is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from interpflow import forkserver
from interpflow.ledger import read_benchmarks

JOB = """
import os, sys, time
import interpflow
from interpflow import forkserver
import numpy
print("pid", os.getpid(), "argv", sys.argv[1:], "cwd", os.getcwd())
print("env", os.environ.get("IF_TEST"), "server", forkserver.IN_SERVER)
print("rand", numpy.random.rand())
print("warn", file=sys.stderr)
if os.environ.get("IF_SLEEP"):
    print("sleeping", flush=True)
    time.sleep(60)
if os.environ.get("IF_ATEXIT"):
    import atexit
    atexit.register(lambda: open(os.environ["IF_ATEXIT"], "w").write("ran"))
if os.environ.get("IF_RAISE"):
    raise ValueError("the job's own error")
sys.exit(int(os.environ.get("IF_CODE", "0")))
"""


@pytest.fixture(scope="module")
def server():
    with forkserver.running() as path:
        yield path


@pytest.fixture()
def script(tmp_path) -> Path:
    path = tmp_path / ".snakemake" / "scripts" / "tmpjob.py"
    path.parent.mkdir(parents=True)
    path.write_text(JOB)
    return path


def run(
    script: Path, socket: str | None, python=sys.executable, **env
) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != forkserver.ENV} | env
    if socket:
        full[forkserver.ENV] = socket
    return subprocess.run(
        [str(python), str(script), "a", "b c"],
        cwd=script.parents[2],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_job_runs_in_the_server_with_its_own_argv_cwd_env_and_streams(server, script):
    proc = run(script, server, IF_TEST="seen")
    assert proc.returncode == 0, proc.stderr
    assert f"argv ['a', 'b c'] cwd {script.parents[2]}" in proc.stdout
    assert "env seen server True" in proc.stdout
    assert "warn" in proc.stderr
    job_pid = int(proc.stdout.split()[1])
    assert job_pid != os.getpid()


def test_exit_codes_and_tracebacks_reach_the_caller(server, script):
    assert run(script, server, IF_CODE="3").returncode == 3
    raised = run(script, server, IF_RAISE="1")
    assert raised.returncode == 1
    assert "ValueError: the job's own error" in raised.stderr


def test_each_job_draws_fresh_global_randomness_as_a_new_interpreter_does(server, script):
    draws = {run(script, server).stdout.split("rand ")[1].split()[0] for _ in range(3)}
    assert len(draws) == 3


def test_without_a_server_the_job_runs_where_it_is(script, tmp_path):
    proc = run(script, str(tmp_path / "no-such.sock"), IF_TEST="here")
    assert proc.returncode == 0, proc.stderr
    assert "env here server False" in proc.stdout
    assert int(proc.stdout.split()[1]) != os.getpid()


def test_only_snakemake_scripts_are_handed_over(server, tmp_path):
    plain = tmp_path / "job.py"
    plain.write_text(JOB)
    proc = run(plain, server)
    assert "server False" in proc.stdout


def test_a_signal_to_the_caller_stops_the_job_and_the_caller_dies_of_it(server, script):
    full = {k: v for k, v in os.environ.items()} | {forkserver.ENV: server, "IF_SLEEP": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=script.parents[2],
        env=full,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().startswith("pid ")
    for line in proc.stdout:
        if line.startswith("sleeping"):
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM


def test_the_job_log_says_so_and_the_ledger_leaves_its_cpu_and_memory_empty(tmp_path):
    bench = tmp_path / "benchmarks/results/deception/default/probes.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        "12.5\t0:00:12\t30.1\t0\t0\t0\t0\t0\t0\t0.2\n"
    )
    log = tmp_path / "logs/deception/default/probes.log"
    log.parent.mkdir(parents=True)
    log.write_text("fit\ninterpflow: ran on cpu\n")
    rows = read_benchmarks(tmp_path / "benchmarks/results", logs=tmp_path / "logs")
    assert rows["max_rss_mb"].to_list() == [30.1] and rows["cpu_s"].to_list() == [0.2]
    log.write_text("fit\ninterpflow: ran on cpu\n" + forkserver.WORKER_LINE + "\n")
    rows = read_benchmarks(tmp_path / "benchmarks/results", logs=tmp_path / "logs")
    assert rows["max_rss_mb"].to_list() == [None] and rows["cpu_s"].to_list() == [None]
    assert rows["wall_s"].to_list() == [12.5] and rows["device"].to_list() == ["cpu"]


def test_log_to_in_the_server_writes_the_line(tmp_path, monkeypatch):
    from interpflow.artifacts import log_to

    monkeypatch.setattr(forkserver, "IN_SERVER", True)
    with log_to(tmp_path / "job.log"):
        print("work")
    assert (tmp_path / "job.log").read_text().splitlines()[-1] == forkserver.WORKER_LINE


def test_run_gives_the_command_a_server_and_returns_its_status():
    check = (
        "import os, sys; sys.exit(7 if os.path.exists(os.environ['INTERPFLOW_FORKSERVER']) else 5)"
    )
    assert forkserver.main(["run", "--", sys.executable, "-c", check]) == 7


def test_exit_handlers_run_and_a_broken_request_leaves_the_server_serving(server, script, tmp_path):
    import socket

    marker = tmp_path / "atexit.txt"
    assert run(script, server, IF_ATEXIT=str(marker)).returncode == 0
    assert marker.read_text() == "ran"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bad:
        bad.connect(server)
        bad.sendall(b"not a request")
    assert run(script, server, IF_TEST="after").stdout.count("env after server True") == 1


def test_a_python_of_another_environment_is_refused_and_runs_where_it_is(server, script, tmp_path):
    """A conda: rule's python (another sys.prefix) would find other packages in the server:
    the server refuses it and the job runs in its own interpreter."""
    venv = tmp_path / "other-env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    path = os.pathsep.join(p for p in sys.path if p)
    proc = run(script, server, venv / "bin" / "python", IF_TEST="other", PYTHONPATH=path)
    assert proc.returncode == 0, proc.stderr
    assert "env other server False" in proc.stdout
