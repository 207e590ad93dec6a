"""Writing artifacts: atomic files, parquet tables and provenance sidecars.

Every stage writes its declared output through :func:`atomic_path` so a killed job never
leaves a half-written file under the final name, and writes a ``<output>.provenance.json``
sidecar with :func:`write_provenance`. Every stage reads a parquet table made upstream through
:func:`read_parquet` (or :func:`read_table`), so a truncated or corrupt one (a copy cut short,
a full disk) fails with one :class:`CorruptFileError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from interpflow import forkserver

if TYPE_CHECKING:
    import pyarrow as pa

#: Packages whose versions go into every provenance sidecar.
TRACKED_PACKAGES = (
    "interpflow",
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "safetensors",
    "polars",
    "pyarrow",
    "numpy",
    "scikit-learn",
    "openai",
    "anthropic",
    "snakemake",
)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` atomically (zstd, statistics on)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=True)
    return Path(path)


class CorruptFileError(ValueError):
    """An input file that exists but cannot be read: truncated, corrupt or of the wrong format."""


@contextlib.contextmanager
def _reading_parquet(path: str | Path) -> Iterator[None]:
    import pyarrow as pa

    try:
        yield
    except (FileNotFoundError, PermissionError):
        raise  # these name the file already, and deleting it is not the cure
    except (pl.exceptions.ComputeError, pa.ArrowException, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        reason = reason.replace(f" '{path}'", "")  # pyarrow repeats the path
        raise CorruptFileError(
            f"{path}: not a valid parquet file (truncated or corrupt): {reason}; "
            "delete it and rerun to rebuild it"
        ) from e


def read_parquet(path: str | Path, **kwargs: Any) -> pl.DataFrame:
    """``pl.read_parquet(path, **kwargs)``; a truncated or corrupt file raises
    :class:`CorruptFileError` naming it (a missing one, ``FileNotFoundError``)."""
    with _reading_parquet(path):
        return pl.read_parquet(path, **kwargs)


def read_table(path: str | Path, **kwargs: Any) -> pa.Table:
    """``pyarrow.parquet.read_table(path, **kwargs)`` with the errors of :func:`read_parquet`."""
    import pyarrow.parquet as pq

    with _reading_parquet(path):
        return pq.read_table(path, **kwargs)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where a package is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance_path(output: str | Path) -> Path:
    """The sidecar path of an artifact: ``<output>.provenance.json``."""
    output = Path(output)
    return output.with_name(output.name + ".provenance.json")


def write_provenance(path: str | Path, **fields: Any) -> Path:
    """Write a provenance sidecar: the given fields plus package versions and the platform.

    ``path`` is the sidecar's own path. Never pass secrets: the sidecar is an artifact.
    """
    record = {
        **fields,
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return write_json(record, path)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex sha256 of the canonical JSON of ``obj`` (sorted keys), cut to ``length``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``mapping`` with values of secret-looking keys replaced by ``"<redacted>"``."""
    secret = ("key", "token", "secret", "password")
    return {
        k: (
            "<redacted>"
            if any(s in k.lower() for s in secret) and not k.lower().endswith("_env")
            else redact(v)
            if isinstance(v, Mapping)
            else v
        )
        for k, v in mapping.items()
    }


class Progress:
    """How far a long loop is, in its job's log: ``<what>: i/total (p%) in t s, ~r s left``,
    at most once every ``every_s`` seconds, and always at the end (issue 14: progress people
    can see). ``clock`` is injectable for tests."""

    def __init__(
        self, what: str, total: int, every_s: float = 30.0, log=print, clock=time.monotonic
    ):
        self.what, self.total, self.every_s, self.log, self.clock = what, total, every_s, log, clock
        self.done_n = 0
        self.t0 = self.last = clock()

    def update(self, n: int = 1) -> None:
        self.done_n += n
        now = self.clock()
        if self.done_n >= self.total or now - self.last >= self.every_s:
            self.last = now
            elapsed = now - self.t0
            left = elapsed / self.done_n * (self.total - self.done_n) if self.done_n else 0.0
            pct = 100.0 * self.done_n / self.total if self.total else 100.0
            self.log(
                f"{self.what}: {self.done_n}/{self.total} ({pct:.0f}%) in {elapsed:.0f} s"
                + (f", ~{left:.0f} s left" if self.done_n < self.total else "")
            )


DEVICE_LINE = "interpflow: ran on {device}"


def job_device() -> str:
    """Where this process ran its model: ``cuda (<GPU name>)`` when torch initialised CUDA
    here, ``cuda`` when vLLM ran with a GPU visible (its engine initialises CUDA in a worker
    process), else ``cpu`` (torch never imported, or the model stayed on the CPU)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return "cpu"
    if torch.cuda.is_initialized():
        try:
            return f"cuda ({torch.cuda.get_device_name()})"
        except RuntimeError:  # a CUDA error left the device unusable: it still ran there
            return "cuda"
    if "vllm" in sys.modules and torch.cuda.is_available():
        return "cuda"
    return "cpu"


@contextlib.contextmanager
def log_to(path: str | Path | None) -> Iterator[None]:
    """Send stdout and stderr (including Python warnings and tracebacks) to ``path``; while
    inside, ``INTERPFLOW_JOB`` names the job by its log path (the judge ledger's ``job``). The
    log ends with ``interpflow: ran on <cuda|cpu>`` (:func:`job_device`): the run ledger counts
    a job's GPU seconds only where it says cuda."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    old_job = os.environ.get("INTERPFLOW_JOB")
    os.environ["INTERPFLOW_JOB"] = str(path)
    with open(path, "w", buffering=1) as fh:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=fh)
            raise
        finally:
            print(DEVICE_LINE.format(device=job_device()), file=fh)
            if forkserver.IN_SERVER:
                print(forkserver.WORKER_LINE, file=fh)
            sys.stdout, sys.stderr = old
            if old_job is None:
                os.environ.pop("INTERPFLOW_JOB", None)
            else:
                os.environ["INTERPFLOW_JOB"] = old_job
