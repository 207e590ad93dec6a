"""A real single-node SLURM for the test suite: install, configure, start, wait, stop.

Debian's ``slurm-wlm`` + ``munge`` (installed with apt-get when missing), one node
``localhost`` in two partitions named like ``profiles/slurm/partitions.yaml`` (``cpu``, the
default, and ``gpu``), a fake GPU GRES (``File=/dev/null``) so that ``--gpus=1`` requests are
scheduled, no accounting (status via ``squeue``; ``MinJobAge`` keeps finished jobs visible to
``squeue``/``scontrol`` for 10 minutes). Daemons are stopped by their PID files.

Facts behind the settings: ../shared/SLURM-LOCAL.md (``slurm.conf`` must live in /etc/slurm:
the jobstep plugin strips ``SLURM_CONF`` from its inner ``srun``).

Use as a context manager (``with LocalSlurm() as slurm: ...``) or from the shell::

    python tests/slurm_harness.py up     # install if needed, start, wait for the node
    python tests/slurm_harness.py down   # stop the daemons started by `up`
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
MARKER = "# written by interpflow tests/slurm_harness.py"
STATE = Path(os.environ.get("INTERPFLOW_SLURM_STATE", "/tmp/interpflow-slurm"))
LOCK = Path("/tmp/interpflow-slurm.lock")
CPUS = 8  # advertised (SlurmdParameters=config_overrides): several jobs at once on 2 cores
MEM_MB = 16000


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message says why."""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)


def install() -> None:
    """apt-get install slurm-wlm munge unless the daemons are already there."""
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("SLURM is not installed and installing it needs root (apt-get)")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("SLURM is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"],
    ):
        proc = _run(cmd, env=env, timeout=600)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


def slurm_conf(state: Path, cpus: int = CPUS, mem_mb: int = MEM_MB) -> str:
    return f"""{MARKER}
ClusterName=interpflow
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
DefMemPerCPU=1000
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=10
SchedulerParameters=sched_interval=1
MessageTimeout=10
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
"""


GRES_CONF = f"""{MARKER}
AutoDetect=off
NodeName=localhost Name=gpu File=/dev/null
"""


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class LocalSlurm:
    """Start munged, slurmctld and slurmd; ``stop()`` ends exactly those, by PID file."""

    def __init__(self, state: Path = STATE):
        self.state = state
        self._lock = None

    # paths
    @property
    def pidfiles(self) -> dict[str, Path]:
        return {
            "slurmd": self.state / "slurmd.pid",
            "slurmctld": self.state / "slurmctld.pid",
            "munged": self.state / "munge" / "munged.pid",  # writable by munge
        }

    def start(self, timeout: float = 60) -> LocalSlurm:
        if os.geteuid() != 0:
            raise SlurmUnavailable("the single-node SLURM needs root (slurmd runs jobs as root)")
        # One harness at a time on this machine: daemons, ports and /etc/slurm are shared.
        self._lock = open(LOCK, "w")  # noqa: SIM115 (held until __exit__)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        install()
        for f in (CONF, GRES):
            if f.exists() and MARKER not in f.read_text():
                raise SlurmUnavailable(f"{f} exists and was not written by this harness")
        self.stop()  # leftovers of an earlier, interrupted session
        if self.state.exists():
            shutil.rmtree(self.state)
        for d in ("ctld", "d", "munge"):
            (self.state / d).mkdir(parents=True)
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(slurm_conf(self.state))
        GRES.write_text(GRES_CONF)
        self._start_munge()
        for cmd in (["slurmctld"], ["slurmd", "-N", "localhost"]):
            proc = _run(["/usr/sbin/" + cmd[0], *cmd[1:]], timeout=30)
            if proc.returncode != 0:
                self.stop()
                raise SlurmUnavailable(f"{cmd[0]} did not start: {proc.stderr.strip()}")
        self.wait_idle(timeout)
        return self

    def _start_munge(self) -> None:
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        shutil.chown(self.state / "munge", "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            proc = _run(["mungekey", "--create", "--keyfile", str(key)])
            if proc.returncode != 0:
                raise SlurmUnavailable(f"cannot create {key}: {proc.stderr.strip()}")
            shutil.chown(key, "munge", "munge")
        if _run(["munge", "-n"]).returncode == 0:  # a munged already serves this host
            return
        proc = _run(
            ["runuser", "-u", "munge", "--", "/usr/sbin/munged",
             "--pid-file", str(self.pidfiles["munged"]), "--force"],
            timeout=30,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SlurmUnavailable(f"munged did not start: {proc.stderr.strip()}")

    def wait_idle(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        last = ""
        while time.monotonic() < end:
            proc = _run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10)
            last = (proc.stdout + proc.stderr).strip()
            if proc.returncode == 0 and set(last.split()) == {"idle"}:  # one line per partition
                return
            time.sleep(0.5)
        log = (self.state / "slurmctld.log").read_text()[-1500:] if self.state.exists() else ""
        self.stop()
        raise SlurmUnavailable(f"the node never became idle (sinfo: {last!r})\n{log}")

    def stop(self, timeout: float = 10) -> None:
        # Only the daemons these PID files name (a stale file's PID may belong to another process).
        pids = [
            pid
            for name, f in self.pidfiles.items()
            if _alive(pid := _pid(f)) and _comm(pid) == name
        ]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while any(map(_alive, pids)) and time.monotonic() < end:
            time.sleep(0.1)
        for pid in filter(_alive, pids):
            os.kill(pid, signal.SIGKILL)

    def remove_config(self) -> None:
        """Remove the config files this harness wrote. While /etc/slurm/slurm.conf names a
        controller that is down, every snakemake start waits ~9 s: the slurm executor plugin
        runs ``scontrol show config`` when it is imported, and scontrol retries the controller."""
        for f in (CONF, GRES):
            if f.exists() and MARKER in f.read_text():
                f.unlink()

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge), as key=value dicts."""
        proc = _run(["scontrol", "show", "job", "-o"], timeout=30)
        if proc.returncode != 0 or "No jobs" in proc.stdout:
            return []
        out = []
        for line in proc.stdout.splitlines():
            fields = {}
            for item in line.split():
                key, _, value = item.partition("=")
                fields[key] = value
            out.append(fields)
        return out

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.remove_config()
        if self._lock is not None:
            self._lock.close()


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "up"
    if action == "up":
        LocalSlurm().start()
        print(_run(["sinfo"]).stdout)
    elif action == "down":
        LocalSlurm().stop()
        LocalSlurm().remove_config()
    else:
        sys.exit(f"usage: {sys.argv[0]} up|down")
