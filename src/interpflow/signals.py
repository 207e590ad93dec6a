"""Stop long jobs cleanly on SIGUSR1/SIGTERM (SLURM time limit, preemption, ``--signal``).

The pattern shared by generation (shards) and adapter training (resume state): install
:class:`StopSignals` at the start, call :meth:`StopSignals.check` at each safe point (a batch
or an optimizer-step boundary), after saving whatever the rerun needs. Inside a long
``model.generate`` call, :meth:`StopSignals.stopping_criteria` ends it at the next token step
once a signal has arrived (SLURM's ``--signal=USR1@<s>`` warning then suffices for a batch of
long chains of thought). When a signal has
arrived, ``check`` appends a record of it to a JSON-lines file beside the output and raises
:class:`Interrupted`: the job exits non-zero, so SLURM requeues it or snakemake's
``--retries`` reruns it, and the rerun resumes. Wrap the function with
:func:`restores_signals` so the caller's handlers come back however it ends.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class Interrupted(RuntimeError):
    """A stop signal arrived; the saved work stays beside the output for the rerun."""


class StopSignals:
    """Record SIGUSR1/SIGTERM instead of dying; :meth:`check` turns them into a clean stop.

    Repeats before the next ``check`` are recorded, not obeyed: a SLURM stop can reach the
    process twice (``scancel`` signals the step's processes and ``srun`` forwards the same
    signal), and dying at the second would lose the record of the first; SLURM's SIGKILL after
    ``KillWait`` still ends a job that never reaches a check. No-op off the main thread
    (Python only delivers signals there).
    """

    SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

    def __init__(self):
        self.received: list[int] = []
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, _frame):
        self.received.append(signum)

    def stopping_criteria(self):
        """A transformers ``StoppingCriteriaList`` for one ``generate`` call: once a signal
        has arrived, its criterion ends every row at the next token step and records that it
        cut the call (``fired``): the caller then discards the batch and calls :meth:`check`."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        signals = self

        class Signalled(StoppingCriteria):
            fired = False

            def __call__(self, input_ids, scores, **kwargs):
                self.fired = self.fired or bool(signals.received)
                return torch.full(
                    (input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device
                )

        return StoppingCriteriaList([Signalled()])

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler or signal.SIG_DFL)
        self._old = {}

    def check(self, record_file: Path, log, where: str, **record) -> None:
        """Raise :class:`Interrupted` (after logging and recording it) if a signal arrived."""
        if not self.received:
            return
        self.restore()
        name = signal.Signals(self.received[0]).name
        with open(record_file, "a") as f:
            f.write(json.dumps({"signal": name, **record}) + "\n")
        msg = f"{name}: stopped {where}"
        log(msg)
        raise Interrupted(msg)


def restores_signals(fn):
    """Whatever ``fn`` raises, the SIGUSR1/SIGTERM handlers are the caller's again after it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.getsignal(s) for s in StopSignals.SIGNALS} if main else {}
        try:
            return fn(*args, **kwargs)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler or signal.SIG_DFL)

    return wrapper


def interruptions(record_file: Path) -> list[dict]:
    """The records :meth:`StopSignals.check` wrote, oldest first. A line cut short by a kill
    during the append (only ever the last one) is skipped with a warning naming the file."""
    f = Path(record_file)
    if not f.exists():
        return []
    out = []
    for n, line in enumerate(f.read_text().splitlines(), start=1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning(
                "%s:%d: unreadable interruption record (cut short by a kill?): skipped", f, n
            )
    return out
