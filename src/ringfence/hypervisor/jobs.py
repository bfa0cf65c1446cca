"""Jobs for hypervisor drivers whose library calls block: each runs in a thread of its own,
and the agent polls its handle (`hypervisor.base.HypervisorJob`).

Hand-written because it is a few lines over `threading`; a pool would only cap how many VMs
start at once, which the agent does not need (it starts each VM once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ringfence.hypervisor.base import HypervisorError, JobResult

__all__ = ["DoneJob", "ThreadJob"]

log = logging.getLogger("ringfence.hypervisor")


class DoneJob:
    """A job that ended before it was handed out (an action refused at once)."""

    def __init__(self, result: JobResult) -> None:
        self._result = result

    def result(self) -> JobResult | None:
        return self._result

    def cancel(self) -> None:
        return None


class ThreadJob:
    """Runs `work` in a daemon thread: its return value is the result's detail, a
    `HypervisorError` a failure with its message, anything else a failure saying it crashed.
    `abort` (optional) is called, in its own thread, when the job is cancelled while it runs
    (libvirt: abort the migration job); `undo` (optional) runs when the work succeeded after a
    cancel (a start that completed anyway: destroy what it started); `on_done` (optional) is
    called from the job's thread once the result is known (the runtime's `Nudge`: the decision
    cycle polls the job at once instead of at its next slot)."""

    def __init__(self, name: str, work: Callable[[], str], *,
                 abort: Callable[[], None] | None = None,
                 undo: Callable[[], None] | None = None,
                 on_done: Callable[[], None] | None = None) -> None:
        self.name = name
        self._on_done = on_done
        self._work = work
        self._abort = abort
        self._undo = undo
        self._result: JobResult | None = None
        self._lock = threading.Lock()
        self.cancelled = False
        self._done = threading.Event()
        threading.Thread(target=self._run, name=f"job-{name}", daemon=True).start()

    def _run(self) -> None:
        try:
            outcome = JobResult(True, self._work())
        except HypervisorError as exc:
            outcome = JobResult(False, str(exc))
        except Exception as exc:  # a driver bug must end the job, as a failure
            log.exception("hypervisor job %s crashed", self.name)
            outcome = JobResult(False, f"{self.name} crashed: {exc!r}")
        with self._lock:
            cancelled = self.cancelled
        if cancelled and outcome.ok and self._undo is not None:
            try:
                self._undo()
                outcome = JobResult(False, f"{self.name} was cancelled; what it did is undone")
            except HypervisorError as exc:
                outcome = JobResult(False, f"{self.name} was cancelled and can not be undone: "
                                           f"{exc}")
        self._result = outcome
        self._done.set()
        if self._on_done is not None:
            self._on_done()

    def result(self) -> JobResult | None:
        return self._result

    def wait(self, timeout: float | None = None) -> JobResult | None:
        """Block until the job ends (tools and tests, never decision code)."""
        self._done.wait(timeout)
        return self.result()  # as `result` says it (a subclass may add to it)

    def cancel(self) -> None:
        with self._lock:
            if self.cancelled or self._result is not None:
                return
            self.cancelled = True
        if self._abort is not None:
            threading.Thread(target=self._safe_abort, name=f"abort-{self.name}",
                             daemon=True).start()

    def _safe_abort(self) -> None:
        assert self._abort is not None
        try:
            self._abort()
        except Exception:
            log.exception("aborting %s failed", self.name)
