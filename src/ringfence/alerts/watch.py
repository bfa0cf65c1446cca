"""Monitors and route self-tests on a schedule, from the leader's alert worker.

`checks_of(config)` turns the ``monitors:`` section and every route's ``self_test`` into
`Check`s: what to run, how often, how many failures in a row count as down, and which routes
carry the alert (`fallback`): for a monitor, its ``routes`` or every route that does not depend
on the monitored system; for a route, every *other* route whose address is not on the same host
(every other route when all are on one host).

`Watcher.poll` (called by the worker's thread, only while this host leads) starts each due
check in a short thread of its own (so a check that hangs until its timeout delays nothing:
not a cycle, not a delivery, not another check; a check still running when it is due again
is not started twice), except ``vm:`` monitors, which read the store and run in the worker's
thread (that thread alone uses its store connection). Outcomes come back through a queue and
are handled at the next poll:

* the `failures`-th failure in a row: journaled (`monitor_down` / `route_test_failed`, fields
  `target` the monitor or route, `method`, `reason`, `count`) and alerted through `fallback`
  (an alert like any other: outbox, delivery by the leader, at least once);
* the first success after that: journaled (`monitor_up` / `route_test_passed`) and the alert is
  resolved (its resolution queued like any alert's).

State is per worker: a new leader starts with every check up, so a system still down when the
leader changes is alerted again by the new leader (a second page, with a new id), and the old
alert is forgotten after `resolution.EXPIRE`. Nothing here raises into the worker: a check's
own exception counts as a failure with its text.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import smtplib
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx

from ringfence.alerts.models import Alert
from ringfence.alerts.monitors import Monitor
from ringfence.alerts.routes import AlertMessage, DeliveryError, deliver
from ringfence.alerts.shared_fate import address_owner, endpoint_host
from ringfence.config import ClusterConfig
from ringfence.core.leases import host_lease_key, vm_owner_key
from ringfence.core.ports import Journal
from ringfence.store.base import Store, StoreUnavailable

__all__ = ["Check", "CheckFailed", "Watcher", "checks_of", "reach"]


class CheckFailed(Exception):
    """One check failed; the text says why."""


@dataclass(frozen=True)
class Check:
    """One scheduled check. `run` blocks (at most about `timeout`) and returns what answered,
    or raises; None for a ``vm:`` monitor (`vm` names it; the watcher reads the store)."""

    what: Literal["monitor", "route"]
    name: str
    method: str
    every: float
    failures: int
    severity: str
    fallback: tuple[str, ...]
    run: Callable[[], str] | None = None
    vm: str | None = None


# ---------------------------------------------------------------------------- the checks
def _port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def _connect(host: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return f"{host}:{port} accepts connections"
    except OSError as exc:
        raise CheckFailed(f"{host}:{port}: {exc.strerror or exc}") from None


def _get(url: str, timeout: float) -> str:
    try:
        answer = httpx.get(url, timeout=timeout, headers={"User-Agent": "ringfence"})
    except httpx.HTTPError as exc:
        raise CheckFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    if not answer.is_success:
        raise CheckFailed(f"{url}: HTTP {answer.status_code}")
    return f"HTTP {answer.status_code}"


def _smtp(route: Alert) -> str:
    assert route.smtp is not None
    host, _, port = route.smtp.rpartition(":")
    try:
        with smtplib.SMTP(host.strip("[]"), int(port), timeout=route.timeout) as smtp:
            smtp.ehlo()
            code, _ = smtp.noop()
    except (smtplib.SMTPException, OSError) as exc:
        raise CheckFailed(f"smtp {route.smtp}: {type(exc).__name__}: {exc}") from None
    if code != 250:
        raise CheckFailed(f"smtp {route.smtp}: NOOP answered {code}")
    return f"smtp {route.smtp} answers"


def _executable(route: Alert) -> str:
    program = route.command[0]
    found = shutil.which(program) if os.sep not in program else program
    if not found or not os.access(found, os.X_OK) or not os.path.isfile(found):
        raise CheckFailed(f"{program}: not an executable file")
    return f"{found} is executable"


def reach(route: Alert) -> str:
    """Does the route's receiver answer? (Its ``send: reach`` test.) Raises CheckFailed."""
    if route.kind == "alertmanager":
        assert route.url is not None
        return _get(route.url.rstrip("/") + "/-/healthy", route.timeout)
    if route.kind == "webhook":
        assert route.url is not None
        return _connect(*_port(route.url), route.timeout)
    if route.kind == "email":
        return _smtp(route)
    if route.kind == "command":
        return _executable(route)
    raise CheckFailed(f"a {route.kind} route has no receiver to test")


def _send_test(route: Alert, cluster: str, host: str, new_id: Callable[[], str],
               wall: Callable[[], float]) -> str:
    test = AlertMessage(new_id(), "info", f"self-test of alert route {route.label}: no action "
                                          f"needed", None, None, cluster, host, wall(),
                        routes=(route.label,))
    done = deliver(route.model_copy(update={"retries": 0}), test)
    if not done.delivered:
        raise CheckFailed(done.detail)
    return f"test alert delivered ({done.detail})"


def _monitor_run(monitor: Monitor) -> Callable[[], str] | None:
    if monitor.http is not None:
        url = monitor.http
        return lambda: _get(url, monitor.timeout)
    if monitor.tcp is not None:
        host, _, port = monitor.tcp.rpartition(":")
        return lambda: _connect(host.strip("[]"), int(port), monitor.timeout)
    return None


def _depends(config: ClusterConfig, route: Alert, monitor: Monitor) -> bool:
    """The route goes through the monitored system (same host name, or the same VM)."""
    address = route.url or route.smtp or ""
    if not address:
        return False
    mine = endpoint_host(address)
    if monitor.vm is not None:
        return address_owner(config, address) == ("vm", monitor.vm)
    theirs = endpoint_host(monitor.target)
    if mine is not None and mine == theirs:
        return True
    owner = address_owner(config, monitor.target)
    return owner is not None and owner[0] == "vm" and address_owner(config, address) == owner


def checks_of(config: ClusterConfig, *, host: str = "", new_id: Callable[[], str] | None = None,
              wall: Callable[[], float] | None = None) -> list[Check]:
    """The cluster file's monitors and route self-tests as checks (see the module docstring).
    `host`, `new_id` and `wall` make the test alerts of ``send: info`` self-tests."""
    import time
    import uuid

    ids = new_id or (lambda: uuid.uuid4().hex)
    clock = wall or time.time
    senders = [r for r in config.alerts if r.kind not in ("deadman", "log")]
    checks: list[Check] = []
    for monitor in config.monitors:
        if monitor.routes:
            fallback = tuple(monitor.routes)
        else:
            fallback = tuple(r.label for r in senders if not _depends(config, r, monitor)) \
                or tuple(r.label for r in senders)
        checks.append(Check("monitor", monitor.name, monitor.method, monitor.every,
                            monitor.failures, monitor.severity, fallback,
                            _monitor_run(monitor), monitor.vm))
    for route in senders:
        if route.self_test is None:
            continue
        where = endpoint_host(route.url or route.smtp or "")
        others = tuple(r.label for r in senders if r is not route and (
            where is None or endpoint_host(r.url or r.smtp or "") != where)) \
            or tuple(r.label for r in senders if r is not route)
        run: Callable[[], str]
        if route.self_test.send == "info":
            def run(route: Alert = route) -> str:
                return _send_test(route, config.name, host, ids, clock)
        else:
            def run(route: Alert = route) -> str:
                return reach(route)
        checks.append(Check("route", route.label, route.kind, route.self_test.every, 1,
                            "warning", others, run))
    return checks


# ---------------------------------------------------------------------------- the watcher
@dataclass
class _State:
    next_at: float = 0.0
    running: bool = False
    failures: int = 0
    down: AlertMessage | None = None  # the alert raised when it went down
    down_noted: bool = False


@dataclass
class Watcher:
    """Runs `checks` (see the module docstring). `alert(severity, text, vm, routes)` raises
    an alert (journal and queue) and returns it; `send` queues a message (a resolution)."""

    checks: Sequence[Check]
    journal: Journal
    alert: Callable[[str, str, str | None, Sequence[str]], AlertMessage | None]
    send: Callable[[AlertMessage], None]
    wall: Callable[[], float]
    states: dict[str, _State] = field(default_factory=dict)
    results: queue.Queue[tuple[Check, bool, str]] = field(default_factory=queue.Queue)

    def poll(self, now: float, store: Store | None) -> None:
        """Handle finished checks, then start the due ones. Never blocks beyond a ``vm:``
        monitor's store reads; never raises."""
        while True:
            try:
                check, ok, detail = self.results.get_nowait()
            except queue.Empty:
                break
            self._outcome(check, ok, detail)
        for check in self.checks:
            state = self.states.setdefault(f"{check.what}:{check.name}", _State())
            if state.running or now < state.next_at:
                continue
            state.next_at = now + check.every
            if check.run is None:
                ok, detail = self._vm_check(check, store)
                if detail:
                    self._outcome(check, ok, detail)
                continue
            state.running = True
            threading.Thread(target=self._run, args=(check,), daemon=True,
                             name=f"check-{check.name}").start()

    def _run(self, check: Check) -> None:
        assert check.run is not None
        try:
            self.results.put((check, True, check.run()))
        except (CheckFailed, DeliveryError) as exc:
            self.results.put((check, False, str(exc)))
        except Exception as exc:  # a check must never kill anything
            self.results.put((check, False, f"{type(exc).__name__}: {exc}"))

    def _vm_check(self, check: Check, store: Store | None) -> tuple[bool, str]:
        """Empty detail: the store did not answer (nothing known: no outcome)."""
        if store is None or check.vm is None:
            return True, ""
        try:
            owner = store.get(vm_owner_key(check.vm))
            host = owner.value.get("host") if owner is not None and isinstance(
                owner.value, dict) else None
            if not host:
                return False, f"{check.vm} has no host (not placed)"
            if store.get(host_lease_key(str(host))) is None:
                return False, f"{check.vm} is placed on {host}, which holds no lease"
        except StoreUnavailable:
            return True, ""
        return True, f"{check.vm} runs on {host}"

    def _outcome(self, check: Check, ok: bool, detail: str) -> None:
        state = self.states.setdefault(f"{check.what}:{check.name}", _State())
        state.running = False
        kinds = (("monitor_down", "monitor_up") if check.what == "monitor"
                 else ("route_test_failed", "route_test_passed"))
        if ok:
            if state.down_noted:
                self.journal.record(kinds[1], target=check.name, method=check.method,
                                    reason=detail, count=state.failures)
                if state.down is not None:
                    with contextlib.suppress(Exception):
                        self.send(state.down.resolution(self.wall(), f"{check.name} answers "
                                                                      f"again"))
            state.failures, state.down, state.down_noted = 0, None, False
            return
        state.failures += 1
        if state.down_noted or state.failures < check.failures:
            return
        state.down_noted = True
        self.journal.record(kinds[0], target=check.name, method=check.method, reason=detail,
                            count=state.failures)
        if not check.fallback:
            return  # no other route: the journal is all there is
        if check.what == "monitor":
            text = (f"monitor {check.name} ({check.method}) does not answer "
                    f"({state.failures} failed checks): {detail}")
        else:
            text = f"alert route {check.name} failed its self-test: {detail}"
        state.down = self.alert(check.severity, text, check.vm, check.fallback)
