"""A fork server for snakemake's ``script:`` jobs: one process imports the heavy libraries
(torch, transformers, peft, scikit-learn) once, and each job runs in a fork of it instead of a
fresh interpreter that spends ~6 CPU-seconds importing them again.

On 2 cores that import is most of a small job: a preset rehearsal's 130 jobs spent more time
importing than computing (``benchmarks/forkserver.py`` measures the two side by side). The
server is opt-in and local: ``INTERPFLOW_FORKSERVER=<socket>`` in a job's environment makes the
job (:func:`delegate`, called when ``interpflow`` is first imported by a snakemake script) hand
its script, arguments, working directory, environment and standard streams to the server and
wait for its exit status; with no such variable, or no server listening, the job runs as it
always did. Cluster jobs never use it (each SLURM job is its own machine's process).

Per job the server forks a supervisor, which forks the job and relays to the client its exit
status (a signal death as the shell reports it, 128 + signal) and, the other way, any signal
the client receives (snakemake's SIGTERM, SLURM's SIGUSR1), so stopping a job stops its fork.
The forked job reseeds Python's and NumPy's global generators as a fresh interpreter would
(torch's default seed is a constant either way) and writes in its log that it ran in the
server: snakemake's ``benchmark:`` measures the client's process tree, so that job's
``cpu_time`` and ``max_rss`` are not its own and the run ledger leaves them empty.

    python -m interpflow.forkserver run -- snakemake --cores 2 all
    python -m interpflow.forkserver serve --socket /tmp/if.sock &   # or by hand
    INTERPFLOW_FORKSERVER=/tmp/if.sock snakemake --cores 2 all
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Iterator

ENV = "INTERPFLOW_FORKSERVER"
#: the libraries the server imports once (each costs a fresh job 0.1-2.5 CPU-seconds); polars
#: and pyarrow are left out: their thread pools start at import and a fork would lose them
PRELOAD = (
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.generation.utils",
    "peft",
    "sklearn.linear_model",
    "sklearn.metrics",
    "matplotlib",
)
#: what a job run in the server writes in its log (the run ledger reads it)
WORKER_LINE = "interpflow: ran in the fork server (benchmark cpu_time and max_rss not measured)"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_HEADER = struct.Struct("!Q")
#: True in a job the server forked (so its own imports do not delegate again)
IN_SERVER = False


def is_snakemake_script(argv0: str) -> bool:
    """True where ``argv0`` is a script snakemake wrote for a ``script:`` job."""
    return f"{os.sep}.snakemake{os.sep}scripts{os.sep}" in os.path.abspath(argv0)


def delegate() -> None:
    """Run this snakemake script job in the fork server and exit with its status; return
    (and let the job run here) where no server is named or none answers."""
    path = os.environ.get(ENV)
    if IN_SERVER or not path or not sys.argv or not is_snakemake_script(sys.argv[0]):
        return
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        return
    request = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "path": sys.path,
        "prefix": sys.prefix,
    }
    sys.stdout.flush()
    sys.stderr.flush()
    socket.send_fds(conn, [b"r"], [0, 1, 2])
    payload = json.dumps(request).encode()
    conn.sendall(_HEADER.pack(len(payload)) + payload)
    status = _await_status(conn)
    if status is not None:
        os._exit(status)
    conn.close()  # refused: another environment's python (a conda: rule) runs here


def _await_status(conn: socket.socket) -> int | None:
    """The job's exit status, read from its supervisor while signals are forwarded to it;
    None where the server refused the job (its python is another environment's)."""

    def forward(signum, _frame):
        try:
            conn.sendall(f"{signum}\n".encode())
        except OSError:
            pass

    reader = conn.makefile("r")
    if reader.readline().strip() != "started":  # "refuse", or a server gone
        return None
    for sig in FORWARDED:
        signal.signal(sig, forward)
    for line in reader:
        kind, _, value = line.partition(" ")
        if kind == "exit":
            status = int(value)
            if status < 0:  # died of a signal: die of it too, as the shell would see it
                signal.signal(-status, signal.SIG_DFL)
                os.kill(os.getpid(), -status)
            return status
    return 1  # the server went away mid-job


@contextlib.contextmanager
def running(directory: str | None = None, timeout: float = 120.0) -> Iterator[str]:
    """A fork server in a child process for the duration of the block; yields its socket path
    (put it in the jobs' environment as ``INTERPFLOW_FORKSERVER``)."""
    import subprocess
    import tempfile
    import time

    with (
        tempfile.TemporaryDirectory(prefix="ifs-", dir=directory) as tmp,
        open(os.path.join(tmp, "server.log"), "w+") as log,
    ):
        path = os.path.join(tmp, "jobs.sock")
        env = {k: v for k, v in os.environ.items() if k != ENV}
        cmd = [sys.executable, "-m", "interpflow.forkserver", "serve", "--socket", path]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not os.path.exists(path):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"interpflow.forkserver did not start: {log.read()[-2000:]}")
                time.sleep(0.1)
            yield path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve(path: str, preload: tuple[str, ...] = PRELOAD) -> None:
    """Import ``preload``, listen on the unix socket ``path`` and fork a supervisor per job,
    until SIGTERM or SIGINT."""
    import importlib

    for name in preload:
        importlib.import_module(name)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the socket appears only once the server is ready
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"interpflow.forkserver: ready on {path} (pid {os.getpid()})", flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            if os.fork() == 0:  # the supervisor never returns into this loop
                code = 1
                try:
                    listener.close()
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    code = _supervise(conn)
                except BaseException:  # noqa: BLE001 (a broken request: said, and the server goes on)
                    traceback.print_exc()
                finally:
                    os._exit(code)
            conn.close()
    finally:
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


def _supervise(conn: socket.socket) -> int:
    """Receive one job, fork it, relay signals to it and its exit status back; 0."""
    _, fds, _, _ = socket.recv_fds(conn, 1, 3)
    (size,) = _HEADER.unpack(_recv_exactly(conn, _HEADER.size))
    request = json.loads(_recv_exactly(conn, size))
    if request.get("prefix") != sys.prefix:  # another environment's python: not ours to run
        conn.sendall(b"refuse\n")
        for fd in fds:
            os.close(fd)
        return 0
    conn.sendall(b"started\n")
    pid = os.fork()
    if pid == 0:
        try:
            conn.close()
            _run_job(request, fds)
        finally:  # a job that could not even start
            os._exit(1)
    for fd in fds:
        os.close(fd)
    buffered = b""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        ready, _, _ = select.select([conn], [], [], 0.05)
        if not ready:
            continue
        chunk = conn.recv(64)
        if not chunk:  # the client died: so does its job
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 0
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            os.kill(pid, int(line))
    try:
        conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    except OSError:
        pass
    return 0


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    """``n`` bytes from ``conn``."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection mid-request")
        data += chunk
    return data


def _run_job(request: dict, fds: list[int]) -> None:
    """In the forked job: take on the client's streams, directory, environment and path,
    run its script as ``__main__`` and exit with its status (never returns)."""
    global IN_SERVER
    IN_SERVER = True
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for sig in (signal.SIGINT,):
        signal.signal(sig, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv[:] = request["argv"]
    sys.path[:] = request["path"]
    _reseed()
    code = 0
    try:
        import runpy

        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (the job's own error: a traceback and status 1, as python)
        traceback.print_exc()
        code = 1
    finally:
        import atexit

        atexit._run_exitfuncs()  # what a fresh interpreter runs at exit (buffers, temp files)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


def _reseed() -> None:
    """Fresh entropy for Python's and NumPy's global generators, as a new interpreter has."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``serve`` (the server itself) or ``run -- <command>`` (a command whose
    snakemake jobs use a server started for it); the command's exit status."""
    from interpflow.cli import parser as cli_parser

    ap = cli_parser(module="interpflow.forkserver", doc=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="import the heavy libraries once and serve jobs")
    srv.add_argument("--socket", required=True, help="the unix socket to listen on")
    run = sub.add_parser("run", help="run a command (e.g. snakemake) with a server for its jobs")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args(argv)
    if args.command == "serve":
        serve(args.socket)
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("run: no command given (python -m interpflow.forkserver run -- snakemake ...)")
    import subprocess

    with running() as path:
        return subprocess.run(cmd, env=os.environ | {ENV: path}, check=False).returncode


if __name__ == "__main__":  # run the package's module, whose IN_SERVER the jobs read
    from interpflow.forkserver import main as package_main

    sys.exit(package_main())
