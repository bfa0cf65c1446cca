"""One alert, and delivering it by one route: the message, the dispatch per kind, retries.

`AlertMessage` is what every route sends: an id (the idempotency key: the same alert delivered
twice, by two leaders or by a host and then by the leader, carries the same id, so receivers
dedupe), severity, text, the host and VM it is about, the cluster, who raised it and when, its
`status` (``firing``, or ``resolved`` with `ends`, when the incident it is about resolved: the
resolution keeps the alert's id, and its idempotency `key` is ``<id>:resolved``), and `routes`
(the labels of the only routes that may take it; empty: every route).

`deliver` makes up to ``1 + route.retries`` attempts, each bounded by ``route.timeout``, with
backoff 1 s, 2 s, 4 s … between them, and returns a `Delivery` (delivered or not, attempts, what
the receiver answered or why it failed). It never raises for a receiver's failure; it blocks its
caller for at most about ``(1 + retries) * timeout + 2**retries`` seconds, which is why only the
delivery threads of `alerts.worker` call it, never a decision cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ringfence.alerts.models import Alert, severity_rank

__all__ = ["AlertMessage", "Delivery", "DeliveryError", "deliver", "iso_time", "wants"]

BACKOFF = 1.0
MAX_TEXT = 4096


class DeliveryError(Exception):
    """One attempt failed: the receiver refused, did not answer in time, or is unreachable."""


@dataclass(frozen=True, slots=True)
class AlertMessage:
    id: str
    severity: str
    text: str
    host: str | None
    vm: str | None
    cluster: str
    raised_by: str
    t: float  # wall clock, seconds since the epoch
    status: str = "firing"  # or "resolved"
    ends: float | None = None  # a resolution: when the incident resolved (wall clock)
    routes: tuple[str, ...] = ()  # only these routes (labels); empty: every route

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    @property
    def key(self) -> str:
        """The idempotency key at the receivers and the outbox key: the id, or
        ``<id>:resolved`` for the resolution of that alert."""
        return f"{self.id}:resolved" if self.resolved else self.id

    def resolution(self, ends: float, why: str) -> AlertMessage:
        """The notice that this alert is resolved: same id, severity, host, VM and start."""
        return replace(self, status="resolved", ends=ends,
                       text=f"resolved ({why}): {self.text}"[:MAX_TEXT])

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["routes"] = list(self.routes)
        return value

    def body(self) -> dict[str, Any]:
        """What a webhook or a command receives (a resolution also has ``ends_time``)."""
        body = {**self.to_json(), "time": iso_time(self.t)}
        if self.ends is not None:
            body["ends_time"] = iso_time(self.ends)
        return body

    @staticmethod
    def from_json(value: object) -> AlertMessage | None:
        """Back from the outbox; None for a record this version can not read."""
        if not isinstance(value, dict):
            return None
        try:
            return AlertMessage(
                id=str(value["id"]), severity=str(value["severity"]),
                text=str(value["text"])[:MAX_TEXT],
                host=None if value.get("host") is None else str(value["host"]),
                vm=None if value.get("vm") is None else str(value["vm"]),
                cluster=str(value["cluster"]), raised_by=str(value["raised_by"]),
                t=float(value["t"]),
                status="resolved" if value.get("status") == "resolved" else "firing",
                ends=None if value.get("ends") is None else float(value["ends"]),
                routes=tuple(str(r) for r in value.get("routes") or ()))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    attempts: int
    detail: str


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def wants(route: Alert, message: AlertMessage) -> bool:
    """The route takes this alert: it sends alerts (not deadman, not log), the alert is not
    meant for other routes only, and the severity reaches its `min_severity`."""
    if route.kind in ("deadman", "log"):
        return False
    if message.routes and route.label not in message.routes:
        return False
    return severity_rank(message.severity) >= severity_rank(route.min_severity)


def _attempt(route: Alert, message: AlertMessage) -> str:
    if route.kind == "webhook":
        from ringfence.alerts.http_routes import send_webhook

        return send_webhook(route, message)
    if route.kind == "alertmanager":
        from ringfence.alerts.http_routes import send_alertmanager

        return send_alertmanager(route, message)
    if route.kind == "email":
        from ringfence.alerts.mail import send_email

        return send_email(route, message)
    if route.kind == "command":
        from ringfence.alerts.command import run_command

        return run_command(route, message)
    raise DeliveryError(f"a {route.kind} route delivers no alerts")


def deliver(route: Alert, message: AlertMessage, *,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Deliver `message` by `route`, retrying with backoff (see the module docstring)."""
    detail = ""
    for attempt in range(1, route.retries + 2):
        try:
            return Delivery(True, attempt, _attempt(route, message))
        except DeliveryError as exc:
            detail = str(exc)
        except Exception as exc:  # a route must never kill its delivery thread
            detail = f"{type(exc).__name__}: {exc}"
        if attempt <= route.retries:
            sleep(BACKOFF * 2 ** (attempt - 1))
    return Delivery(False, route.retries + 1, detail)
