"""Domain events from libvirt, for `LibvirtHypervisor`: a guest whose QEMU dies or that
crashes is noticed when libvirt sees it (the QEMU monitor's end of file), not at the agent's
next listing; and a finished migration's statistics (downtime, bytes sent) arrive with
libvirt's job-completed event.

libvirt delivers events only to connections opened after an event loop was registered, and
only while that loop runs: `ensure_event_loop` registers libvirt's default implementation
once per process and runs it in a daemon thread. `DomainEvents.attach` registers the
callbacks on one connection (again on every reconnection).

What is kept:

- `changed`: a `threading.Event` set on every life-cycle event of a domain; whoever waits on
  it (the agent's cycle) clears it.
- `take_lost()`: domains that stopped without this driver asking (QEMU killed or failed,
  guest crashed, guest shut itself down), each with why, since the last call.
- `completed(vm)`: the statistics of `vm`'s last finished job (a migration), if the event
  came.

Failure semantics: never raises into libvirt's event thread (a callback that fails is
logged); `attach` raises `libvirt.libvirtError` when the connection refuses the callbacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import libvirt

__all__ = ["DomainEvents", "ensure_event_loop"]

log = logging.getLogger("ringfence.hypervisor")
_loop_lock = threading.Lock()
_loop_started = False

_STOPPED_WHY = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "the guest shut down",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "the guest crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "migrated away",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "its QEMU process died",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "reverted to a snapshot",
}


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # the loop must keep running for every connection
                    log.exception("libvirt event loop")
                    time.sleep(0.1)

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


class DomainEvents:
    def __init__(self) -> None:
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._lost: dict[str, str] = {}
        self._asked: dict[str, float] = {}
        self._completed: dict[str, dict[str, Any]] = {}
        self._callbacks: dict[int, list[int]] = {}
        self.log: deque[tuple[float, str, str]] = deque(maxlen=200)

    def attach(self, connection: Any) -> None:
        ids = [connection.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None)]
        job_completed = getattr(libvirt, "VIR_DOMAIN_EVENT_ID_JOB_COMPLETED", None)
        if job_completed is not None:
            ids.append(connection.domainEventRegisterAny(None, job_completed,
                                                         self._job_completed, None))
        with self._lock:
            self._callbacks[id(connection)] = ids

    def detach(self, connection: Any) -> None:
        """Deregister this object's callbacks from `connection` (before closing it)."""
        with self._lock:
            ids = self._callbacks.pop(id(connection), [])
        for callback in ids:
            connection.domainEventDeregisterAny(callback)

    def expect_stop(self, vm: str, within: float = 600.0) -> None:
        """This driver is about to stop, destroy or migrate `vm`: its stop is not lost."""
        with self._lock:
            self._asked[vm] = time.monotonic() + within

    def done_stopping(self, vm: str) -> None:
        with self._lock:
            self._asked.pop(vm, None)

    def take_lost(self) -> dict[str, str]:
        with self._lock:
            lost, self._lost = self._lost, {}
        return lost

    def completed(self, vm: str) -> dict[str, Any] | None:
        with self._lock:
            return self._completed.get(vm)

    def forget_completed(self, vm: str) -> None:
        with self._lock:
            self._completed.pop(vm, None)

    # ------------------------------------------------------------------ callbacks
    def _lifecycle(self, _conn: Any, domain: Any, event: int, detail: int,
                   _opaque: Any) -> None:
        try:
            vm = str(domain.name())
            why = (_STOPPED_WHY.get(detail, f"stopped ({detail})")
                   if event == libvirt.VIR_DOMAIN_EVENT_STOPPED else None)
            if event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
                why = "the guest crashed"
            with self._lock:
                self.log.append((time.monotonic(), vm, why or f"event {event}.{detail}"))
                if why is not None:
                    asked = self._asked.get(vm, 0.0) > time.monotonic()
                    expected = detail in (libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
                                          libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED)
                    if not asked and not expected:
                        self._lost[vm] = why
            self.changed.set()
        except Exception:
            log.exception("libvirt life-cycle event")

    def _job_completed(self, _conn: Any, domain: Any, params: dict[str, Any],
                       _opaque: Any) -> None:
        try:
            with self._lock:
                self._completed[str(domain.name())] = dict(params)
        except Exception:
            log.exception("libvirt job-completed event")
