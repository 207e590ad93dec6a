"""The sqlite caches of paid or slow calls: the judges' replies and the embedders' vectors.

:class:`SqliteCache` opens one cache file (WAL mode, ``synchronous=NORMAL``), creates its
table and closes it; the judges' ``_Cache`` (:mod:`interpflow.judges`) and the embeddings'
``_VectorCache`` (:mod:`interpflow.embeddings`) add their reads and writes. Another process
writing the same file is waited for up to ``timeout_s``; :func:`cache_errors` turns what
sqlite raises on a corrupt or still-locked file into one :class:`CacheError` naming the file.
A corrupt cache is never deleted or moved aside.

Standard library only: :mod:`interpflow.judges` imports this module, and Snakemake's
planning code imports that.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar


class CacheError(RuntimeError):
    """A sqlite cache file that cannot be used: corrupt, or locked past the busy timeout."""


@contextlib.contextmanager
def cache_errors(path: Path, what: str, timeout_s: float) -> Iterator[None]:
    """Turn sqlite's errors on the cache file ``path`` into one :class:`CacheError` naming it.

    A corrupt cache is left where it is, never deleted or moved aside: it may hold paid API
    results, and the user decides (restore a backup, salvage it, or move it aside).
    """
    try:
        yield
    except sqlite3.DatabaseError as e:
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            msg = (
                f"{path}: {what} is locked by another process (waited {timeout_s:g} s); "
                "let that job finish or stop it, then rerun"
            )
        elif code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            msg = (
                f"{path}: {what} is corrupt ({e}); left as it is, since it may hold paid API "
                "results: restore it from a backup, or move it aside (with its -wal and -shm "
                "files) to start an empty cache, then rerun"
            )
        elif isinstance(e, sqlite3.OperationalError):
            msg = f"{path}: {what}: {e}"
        else:
            raise
        raise CacheError(msg) from e


class SqliteCache:
    """One sqlite cache file holding one table; subclasses add the reads and writes.

    They wrap every statement in ``self._errors()`` (:func:`cache_errors`); with ``shared``
    the connection may be used from several threads, each use under ``self._lock``.
    """

    #: What the file is called in errors, e.g. ``"judge cache"``.
    what: ClassVar[str]
    #: The table, as a ``CREATE TABLE IF NOT EXISTS`` statement.
    table: ClassVar[str]
    #: One connection shared between threads (under ``self._lock``); else the opening thread's.
    shared: ClassVar[bool] = False

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=timeout_s, check_same_thread=not self.shared
        )
        with self._lock, self._errors():
            self._wal(time.monotonic() + timeout_s)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(self.table)
            self._conn.commit()

    def _wal(self, deadline: float) -> None:
        """Put the file in WAL mode, once. Switching modes needs the file to itself, and sqlite
        answers "locked" at once (no busy wait) when two jobs open a new cache together (two
        label jobs of one preset): retry until ``deadline``, then let it raise."""
        while True:
            try:
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return cache_errors(self.path, self.what, self.timeout_s)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


__all__ = ["CacheError", "SqliteCache", "cache_errors"]
