"""Delivering alerts without blocking a cycle, and without losing one when the leader dies.

`RoutedAlerts` is the `AlertSink` of a real agent: `send` journals `alert_sent` and hands the
alert to the `AlertWorker`'s queue; it never blocks and never raises. The worker's own thread
does the rest; each route has a delivery thread of its own, so a slow or dead receiver delays
only its route, never another route, the dead-man's pings, nor a decision.

The outbox (semantics: **at least once** per route, deduplicated by the alert id):

1. Whoever raises an alert writes it to the store, ``alerts/outbox/<id>`` (a compare-and-set on
   the key's absence), when the store answers; a ``warning`` or ``critical`` alert is also
   written as firing, ``alerts/firing/<id>``, in the same transaction.
2. The leader's worker reads the outbox (every `SCAN` seconds, and at once after its own
   write) and delivers each record by every route that wants it (severity filter, rate limit)
   and that the record does not list as done yet.
3. After each route's outcome (delivered, failed after its retries, or refused by the rate
   limit) the record's ``done`` list gets that route, by compare-and-set on the record's
   revision; a record that every route is done with is deleted, by compare-and-set too.

Resolution (`alerts.resolution`): every `RESOLVE_SCAN` seconds, while alerts are firing, the
leader builds the incidents of the store's journal; a firing alert whose incident resolved is
turned, in one compare-and-set transaction, into its resolution's outbox record
(``alerts/outbox/<id>:resolved``, the same id with ``status: resolved`` and ``ends``) while its
firing record is deleted, and journaled `alert_resolved`. The resolution is then delivered like
any alert (by the leader, the next leader taking over what is not marked done), but never by a
route before that route is done with the alert it resolves (Alertmanager would fire it again).
A leader that dies before the transaction leaves the alert firing: the next one resolves it.

A leader that dies between a delivery and its mark leaves the route owed: the next leader
delivers it again, with the same id (webhook `Idempotency-Key`, Alertmanager `incident` label,
e-mail `Message-ID`, the command's ``RINGFENCE_ALERT_ID``), so a receiver that dedupes shows it
once. A host whose store write fails (the store is lost, this host fenced itself, failsafe,
or it has not joined the store yet) delivers its own alert directly by every route; a write
whose outcome is unknown (the store answered nothing) is delivered directly too, and may then
be delivered again by the leader: again at least once. Nothing is retried forever: a route
that fails `1 + retries` attempts is journaled `alert_failed` and marked done. Rate limits are
counted per worker (a new leader starts its windows afresh).

The dead-man's switch: every ``deadman`` route is pinged every ``every`` seconds by the
leader, or by any host that finds no leader in the store or can not reach the store (so that
even a cluster without a store keeps pinging while any host lives); a host that does not ping
looks again every `PING_RECHECK` seconds, so a new leader pings within a second of its
election. A failed ping is journaled
once per run of failures (`alert_failed`), and the first answered ping after it as
`alert_delivered`.

Monitors and route self-tests (`alerts.watch`): while this host leads, the worker's thread
polls its `Watcher`, which runs each due check in a thread of its own and alerts through this
same outbox when a monitored system or a route goes silent.

The worker's thread alone uses its store connection. Outcomes are journaled as
`alert_delivered` / `alert_failed` (fields: `target` the route, `method` its kind, `severity`,
`detail` the alert's text, `reason` the failure, `count` the attempts, `duration` seconds from
raising to the acknowledgement).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ringfence.alerts.models import Alert, severity_rank
from ringfence.alerts.resolution import FIRING, firing_key, settle
from ringfence.alerts.routes import AlertMessage, Delivery, deliver, wants
from ringfence.alerts.watch import Check, Watcher
from ringfence.core.leases import MANAGER_KEY
from ringfence.core.ports import Journal
from ringfence.store.base import Compare, Delete, Op, Put, Store, StoreUnavailable

__all__ = ["OUTBOX", "RESOLVE_SCAN", "SCAN", "AlertWorker", "RoutedAlerts", "outbox_key"]

OUTBOX = "alerts/outbox/"
SCAN = 0.5
"""Seconds between the leader's reads of the outbox."""
MAX_QUEUE = 10_000
PING_RECHECK = 1.0
RESOLVE_SCAN = 2.0
"""Seconds between the leader's looks at whether firing alerts are resolved."""
"""Seconds between a non-leader's looks at whether it should ping the dead-man's switch."""


def outbox_key(key: str) -> str:
    """The outbox record of an alert's `AlertMessage.key` (its id, or ``<id>:resolved``)."""
    return f"{OUTBOX}{key}"


@dataclass
class _Limiter:
    """A sliding window: at most `count` in any `per` seconds."""

    count: int
    per: float
    times: deque[float] = field(default_factory=deque)

    def allow(self, now: float) -> bool:
        while self.times and self.times[0] <= now - self.per:
            self.times.popleft()
        if len(self.times) >= self.count:
            return False
        self.times.append(now)
        return True


@dataclass(frozen=True)
class _Job:
    route: Alert
    message: AlertMessage | None  # None: a dead-man ping
    from_outbox: bool


class _RouteSender:
    """One route's delivery thread: jobs in, outcomes back to the worker's queue."""

    def __init__(self, route: Alert, done: Callable[[_Job, Delivery], None]) -> None:
        self.route = route
        self.done = done
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"alert-{route.kind}",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if job.message is None:
                self.done(job, _ping(job.route))
            else:
                self.done(job, deliver(job.route, job.message))


def _ping(route: Alert) -> Delivery:
    from ringfence.alerts.http_routes import ping_deadman
    from ringfence.alerts.routes import DeliveryError

    try:
        return Delivery(True, 1, ping_deadman(route))
    except DeliveryError as exc:
        return Delivery(False, 1, str(exc))


class AlertWorker:
    """See the module docstring. Construct, then `start` once the store can be attached."""

    def __init__(self, routes: Sequence[Alert], *, cluster: str, host: str, journal: Journal,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 checked_vms: Sequence[str] = (), checks: Sequence[Check] = ()) -> None:
        self.routes = list(routes)
        self.cluster = cluster
        self.host = host
        self.journal = journal
        self.clock = clock
        self.wall = wall
        self.new_id = new_id
        self.checked_vms = frozenset(checked_vms)
        self.store: Store | None = None
        self.is_leader: Callable[[], bool] = lambda: False
        self.intake: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self.dropped = 0
        self.store_ok: bool | None = None
        self._limits = {id(r): _Limiter(r.rate_limit.count, r.rate_limit.per)
                        for r in self.routes if r.rate_limit is not None}
        self._senders: dict[int, _RouteSender] = {}
        self._inflight: set[tuple[str, int]] = set()
        self._unmarked: list[tuple[str, str]] = []  # (alert id, route label) to mark done
        self._ping_failures: dict[int, int] = {}
        self._next_ping = {id(r): 0.0 for r in self.routes if r.kind == "deadman"}
        self._next_scan = 0.0
        self._next_resolve = 0.0
        self.watcher = Watcher(checks, journal, self._watch_alert, self._accept, wall)
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the callers' side
    def new_alert(self, severity: str, text: str, *, host: str | None = None,
                  vm: str | None = None, routes: Sequence[str] = ()) -> AlertMessage:
        """A new alert (fresh id, raised by this host now), not queued yet."""
        return AlertMessage(self.new_id(), severity, text, host, vm, self.cluster,
                            self.host, self.wall(), routes=tuple(routes))

    def raise_alert(self, severity: str, text: str, *, host: str | None = None,
                    vm: str | None = None) -> AlertMessage:
        """Queue a new alert. Never blocks, never raises (beyond `MAX_QUEUE` waiting alerts,
        the alert is counted in `dropped`; the journal has it)."""
        message = self.new_alert(severity, text, host=host, vm=vm)
        self.queue(message)
        return message

    def queue(self, message: AlertMessage) -> None:
        """Queue `message` (see `raise_alert`)."""
        if self.intake.qsize() >= MAX_QUEUE:
            self.dropped += 1
        else:
            self.intake.put(("raise", message))

    def start(self, store: Store | None, is_leader: Callable[[], bool]) -> None:
        """Attach the store (None: deliver everything directly) and start the thread."""
        self.store = store
        self.is_leader = is_leader
        self.thread = threading.Thread(target=self._run, name=f"alerts-{self.host}",
                                       daemon=True)
        self.thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop taking work; what is queued is handled within `timeout` if it can be."""
        if self.thread is None:
            return
        self.intake.put(None)
        self.thread.join(timeout)
        for sender in self._senders.values():
            sender.jobs.put(None)

    # ------------------------------------------------------------------ the worker's thread
    def _run(self) -> None:
        while True:
            now = self.clock()
            wake = min([self._next_scan, *self._next_ping.values()], default=now + SCAN)
            try:
                item = self.intake.get(timeout=max(0.0, min(wake - now, SCAN)))
            except queue.Empty:
                item = ()
            if item is None:
                return
            try:
                if item:
                    self._handle(item)
                self._mark_pending()
                now = self.clock()
                if now >= self._next_scan:
                    self._next_scan = now + SCAN  # also when not leading: no busy wait
                    if self.store is not None and self.is_leader():
                        self._scan()
                if now >= self._next_resolve:
                    self._next_resolve = now + RESOLVE_SCAN
                    if self.store is not None and self.is_leader():
                        self._resolve()
                self._pings(now)
                if self.watcher.checks and (self.store is None or self.is_leader()):
                    self.watcher.poll(now, self.store)
            except Exception as exc:  # the worker must never die: journal and go on
                self.journal.record("alert_failed", host=self.host, method="worker",
                                    reason=f"{type(exc).__name__}: {exc}")

    def _handle(self, item: tuple[Any, ...]) -> None:
        if item[0] == "raise":
            self._accept(item[1])
        elif item[0] == "done":
            self._outcome(item[1], item[2])

    def _accept(self, message: AlertMessage) -> None:
        if self.store is not None:
            key = outbox_key(message.key)
            ops: list[Op] = [Put(key, {"alert": message.to_json(), "done": []})]
            if message.resolved:
                ops.append(Delete(firing_key(message.id)))
            elif (severity_rank(message.severity) > 0
                    and any(wants(r, message) for r in self.routes)):
                ops.append(Put(firing_key(message.id), {"alert": message.to_json()}))
            try:
                self.store.txn([Compare.absent(key)], ops)
                self.store_ok = True
                self._next_scan = 0.0  # a leader delivers it at once
                return
            except StoreUnavailable:
                self.store_ok = False
            except Exception:  # an identity guard, a store that refuses: deliver it here
                self.store_ok = False
        for route in self.routes:
            if wants(route, message):
                self._submit(route, message, from_outbox=False)

    def _watch_alert(self, severity: str, text: str, vm: str | None,
                     routes: Sequence[str]) -> AlertMessage:
        """A monitor's or a route test's alert, raised from the worker's own thread."""
        message = self.new_alert(severity, text, vm=vm, routes=routes)
        self.journal.record("alert_sent", vm=vm, severity=severity, detail=text,
                            alert=message.id)
        self._accept(message)
        return message

    def _submit(self, route: Alert, message: AlertMessage, *, from_outbox: bool) -> None:
        limiter = self._limits.get(id(route))
        if limiter is not None and not limiter.allow(self.clock()):
            self.journal.record("alert_failed", host=message.host, vm=message.vm,
                                target=route.label, method=route.kind,
                                severity=message.severity, detail=message.text, count=0,
                                reason=f"rate limit: more than {limiter.count} alerts in "
                                       f"{limiter.per:g}s")
            if from_outbox:
                self._unmarked.append((message.key, route.label))
            return
        if from_outbox:
            self._inflight.add((message.key, id(route)))
        self._sender(route).jobs.put(_Job(route, message, from_outbox))

    def _sender(self, route: Alert) -> _RouteSender:
        sender = self._senders.get(id(route))
        if sender is None:
            sender = _RouteSender(route, lambda job, d: self.intake.put(("done", job, d)))
            self._senders[id(route)] = sender
        return sender

    def _outcome(self, job: _Job, delivery: Delivery) -> None:
        message, route = job.message, job.route
        if message is None:
            self._ping_outcome(route, delivery)
            return
        fields: dict[str, Any] = {
            "host": message.host, "vm": message.vm, "target": route.label,
            "method": route.kind, "severity": message.severity, "detail": message.text,
            "count": delivery.attempts, "alert": message.id,
            "duration": max(0.0, self.wall() - (message.ends or message.t))}
        if delivery.delivered:
            self.journal.record("alert_delivered", reason=delivery.detail, **fields)
        else:
            self.journal.record("alert_failed", reason=delivery.detail, **fields)
        if job.from_outbox:
            self._inflight.discard((message.key, id(route)))
            self._unmarked.append((message.key, route.label))

    # ------------------------------------------------------------------ the outbox
    def _scan(self) -> None:
        assert self.store is not None
        try:
            records = self.store.get_prefix(OUTBOX).items
            self.store_ok = True
        except StoreUnavailable:
            self.store_ok = False
            return
        owed_marks = set(self._unmarked)  # finished, their marks not yet written
        parsed = []
        owed_firing: set[tuple[str, str]] = set()  # (alert id, route): a firing alert owed
        for kv in records:
            record = kv.value if isinstance(kv.value, dict) else {}
            message = AlertMessage.from_json(record.get("alert"))
            done = set(record.get("done") or [])
            parsed.append((kv, message, done))
            if message is not None and not message.resolved:
                owed_firing |= {(message.id, r.label) for r in self.routes
                                if wants(r, message) and r.label not in done}
        for kv, message, done in parsed:
            if message is None:
                with contextlib.suppress(StoreUnavailable):  # unreadable: nobody can send it
                    self.store.txn([Compare.unchanged(kv.key, kv.mod_revision)],
                                   [Delete(kv.key)])
                continue
            busy = False
            for route in self.routes:
                if (not wants(route, message) or route.label in done
                        or (message.key, route.label) in owed_marks):
                    continue
                busy = True
                if message.resolved and (message.id, route.label) in owed_firing:
                    continue  # the alert first, then its resolution
                if (message.key, id(route)) not in self._inflight:
                    self._submit(route, message, from_outbox=True)
            if not busy and not any(a == message.key for a, _ in owed_marks):
                with contextlib.suppress(StoreUnavailable):
                    self.store.txn([Compare.unchanged(kv.key, kv.mod_revision)],
                                   [Delete(kv.key)])

    def _mark_pending(self) -> None:
        """Add the finished routes to their records' ``done`` lists (compare-and-set)."""
        if not self._unmarked or self.store is None:
            return
        still: list[tuple[str, str]] = []
        for alert_key, label in self._unmarked:
            if not self._mark(alert_key, label):
                still.append((alert_key, label))
        self._unmarked = still

    def _mark(self, alert_key: str, label: str) -> bool:
        """True when marked (or nothing is left to mark); False: the store did not answer."""
        assert self.store is not None
        key = outbox_key(alert_key)
        for _ in range(5):  # another worker marking the same record: read again and retry
            try:
                kv = self.store.get(key)
                if kv is None or not isinstance(kv.value, dict):
                    return True
                done = list(kv.value.get("done") or [])
                if label in done:
                    return True
                result = self.store.txn([Compare.unchanged(key, kv.mod_revision)],
                                        [Put(key, {**kv.value, "done": [*done, label]})])
            except StoreUnavailable:
                return False
            if result.succeeded:
                self._next_scan = 0.0  # the scan deletes a finished record
                return True
        return True

    # ------------------------------------------------------------------ resolution
    def _resolve(self) -> None:
        """Resolve the firing alerts whose incidents resolved (see the module docstring)."""
        from ringfence.journal.store_mirror import read_store_journal

        assert self.store is not None
        try:
            firing = self.store.get_prefix(FIRING).items
            if not firing:
                return
            entries = read_store_journal(self.store)
        except StoreUnavailable:
            self.store_ok = False
            return
        records = {}
        for kv in firing:
            message = AlertMessage.from_json(
                kv.value.get("alert") if isinstance(kv.value, dict) else None)
            if message is None:
                with contextlib.suppress(StoreUnavailable):
                    self.store.txn([Compare.unchanged(kv.key, kv.mod_revision)],
                                   [Delete(kv.key)])
                continue
            records[message.id] = (kv, message)
        now = self.wall()
        for verdict in settle([m for _, m in records.values()], entries, now,
                              self.checked_vms):
            kv, message = records[verdict.alert.id]
            ops: list[Op] = [Delete(kv.key)]
            resolution = message.resolution(now, verdict.why)
            if verdict.resolve:
                ops.append(Put(outbox_key(resolution.key),
                               {"alert": resolution.to_json(), "done": []}))
            try:
                result = self.store.txn([Compare.unchanged(kv.key, kv.mod_revision)], ops)
            except StoreUnavailable:
                return
            if result.succeeded and verdict.resolve:
                self._next_scan = 0.0  # deliver it at once
                self.journal.record("alert_resolved", host=message.host, vm=message.vm,
                                    severity=message.severity, detail=message.text,
                                    alert=message.id, reason=verdict.why)

    # ------------------------------------------------------------------ the dead-man's switch
    def _pings(self, now: float) -> None:
        due = [r for r in self.routes if r.kind == "deadman" and now >= self._next_ping[id(r)]]
        if not due or not self._should_ping():
            # Look again soon: a host that starts leading pings within a second, not an
            # interval after the last leader's last ping.
            for route in due:
                self._next_ping[id(route)] = now + min(route.interval, PING_RECHECK)
            return
        for route in due:
            self._next_ping[id(route)] = now + route.interval
            self._sender(route).jobs.put(_Job(route, None, False))

    def _should_ping(self) -> bool:
        """The leader pings; so does any host that finds no leader or no store."""
        if self.store is None or self.is_leader():
            return True
        try:
            leader = self.store.get(MANAGER_KEY)
            self.store_ok = True
        except StoreUnavailable:
            self.store_ok = False
            return True
        return leader is None

    def _ping_outcome(self, route: Alert, delivery: Delivery) -> None:
        failures = self._ping_failures.get(id(route), 0)
        if delivery.delivered:
            if failures:
                self.journal.record("alert_delivered", host=self.host, target=route.label,
                                    method="deadman", count=failures + 1,
                                    reason=f"{delivery.detail}; answered again after "
                                           f"{failures} failed pings")
            self._ping_failures[id(route)] = 0
            return
        if not failures:
            self.journal.record("alert_failed", host=self.host, target=route.label,
                                method="deadman", count=1, reason=delivery.detail)
        self._ping_failures[id(route)] = failures + 1


class RoutedAlerts:
    """The real agent's `AlertSink`: journal `alert_sent`, then queue for the routes."""

    def __init__(self, journal: Journal, worker: AlertWorker) -> None:
        self.journal = journal
        self.worker = worker

    def send(self, severity: str, text: str, *, host: str | None = None,
             vm: str | None = None) -> None:
        try:
            message: AlertMessage | None = self.worker.new_alert(severity, text, host=host,
                                                                 vm=vm)
        except Exception:  # an alert must never break its caller
            message = None
        self.journal.record("alert_sent", host=host, vm=vm, severity=severity, detail=text,
                            alert=message.id if message else None)
        if message is not None:
            with contextlib.suppress(Exception):
                self.worker.queue(message)
