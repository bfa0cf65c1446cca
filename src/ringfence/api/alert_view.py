"""Alerts as the dashboard, `/api/v1/alerts` and `/metrics` show them: what was raised, and
where each route's delivery stands.

Read from two places, both only read here (`alerts.worker` writes them):

- the journal: `alert_sent` (an alert raised), `alert_delivered` / `alert_failed` (a route's
  outcome, journaled by the worker that tried: fields `target` the route, `method` its kind,
  `severity`, `detail` the alert's text, `reason`, `count` the attempts; a rate-limited one
  is an `alert_failed` with ``count`` 0);
- the outbox in the store (`alerts.worker.OUTBOX`): the alerts a route still owes (a record
  lists in ``done`` the routes finished with it; it is deleted once every route is).

An outcome names no alert id (the journal has none), so an outcome belongs to the raised alert
with the same severity and text that it follows (the first such outcome per route, each used
once; a second before the first, clocks of two hosts allowing). An outbox record belongs to the
raised alert with the same severity and text raised within `OUTBOX_SKEW` seconds.

Failure semantics: nothing here raises for what the journal or the outbox holds: an entry or a
record that does not read is skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from ringfence.alerts.models import Alert
from ringfence.alerts.routes import AlertMessage, wants
from ringfence.api.models import AlertDeliveryView, AlertView

__all__ = ["OUTBOX_SKEW", "delivery_counts", "owed_counts", "recent_alerts"]

OUTBOX_SKEW = 5.0
OUTCOME_SKEW = 1.0
OUTCOME_KINDS = ("alert_delivered", "alert_failed")
Outcome = Literal["delivered", "failed", "rate_limited"]


def outcome_of(entry: dict[str, Any]) -> Outcome:
    """delivered, failed or rate_limited."""
    if entry.get("kind") == "alert_delivered":
        return "delivered"
    if entry.get("count") == 0 and str(entry.get("reason") or "").startswith("rate limit"):
        return "rate_limited"
    return "failed"


def delivery_counts(journal: Sequence[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """Outcomes by (route, method, outcome), dead-man pings included (they are journaled once
    per run of failed pings, and when one is answered again)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for entry in journal:
        if entry.get("kind") in OUTCOME_KINDS and entry.get("target"):
            counts[(str(entry["target"]), str(entry.get("method") or "unknown"),
                    outcome_of(entry))] += 1
    return counts


def _messages(outbox: Sequence[dict[str, Any]]) -> list[tuple[AlertMessage, set[str]]]:
    found = []
    for record in outbox:
        message = AlertMessage.from_json(record.get("alert"))
        done = record.get("done")
        if message is not None:
            found.append((message, {str(d) for d in done} if isinstance(done, list) else set()))
    return found


def sending_routes(routes: Sequence[Alert]) -> list[Alert]:
    """The routes that deliver alerts (not the dead-man's switch, not the log)."""
    return [r for r in routes if r.kind not in ("deadman", "log")]


def owed_counts(outbox: Sequence[dict[str, Any]], routes: Sequence[Alert]) -> dict[str, int]:
    """Per route that sends alerts: the outbox records it wants and has not finished."""
    owed = {route.label: 0 for route in sending_routes(routes)}
    for message, done in _messages(outbox):
        for route in sending_routes(routes):
            if route.label not in done and wants(route, message):
                owed[route.label] += 1
    return owed


def _as_message(entry: dict[str, Any]) -> AlertMessage:
    return AlertMessage(id="", severity=str(entry.get("severity") or "info"),
                        text=str(entry.get("detail") or entry.get("text") or ""),
                        host=_text(entry.get("host")), vm=_text(entry.get("vm")), cluster="",
                        raised_by=str(entry.get("by") or ""), t=_t(entry))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _t(entry: dict[str, Any]) -> float:
    value = entry.get("t")
    return float(value) if isinstance(value, int | float) else 0.0


def recent_alerts(journal: Sequence[dict[str, Any]], outbox: Sequence[dict[str, Any]],
                  routes: Sequence[Alert], limit: int = 10) -> list[AlertView]:
    """The last `limit` alerts raised, newest first, each with every route that takes it."""
    raised = [e for e in journal if e.get("kind") == "alert_sent"][-limit:]
    outcomes = [e for e in journal if e.get("kind") in OUTCOME_KINDS
                and e.get("method") != "deadman"]
    used: set[int] = set()
    owed = _messages(outbox)
    views = []
    for sent in raised:
        message = _as_message(sent)
        deliveries = []
        for route in sending_routes(routes):
            if not wants(route, message):
                continue
            deliveries.append(_delivery(route, message, outcomes, used, owed))
        views.append(AlertView(t=message.t, severity=message.severity, host=message.host,
                               vm=message.vm, text=message.text, deliveries=deliveries))
    return views[::-1]


def _delivery(route: Alert, message: AlertMessage, outcomes: list[dict[str, Any]],
              used: set[int], owed: list[tuple[AlertMessage, set[str]]]
              ) -> AlertDeliveryView:
    for index, entry in enumerate(outcomes):
        if (index not in used and entry.get("target") == route.label
                and entry.get("severity") == message.severity
                and str(entry.get("detail") or "") == message.text
                and _t(entry) >= message.t - OUTCOME_SKEW):
            used.add(index)
            count = entry.get("count")
            return AlertDeliveryView(route=route.label, method=route.kind,
                                     state=outcome_of(entry),
                                     detail=_text(entry.get("reason")),
                                     attempts=count if isinstance(count, int) else None,
                                     t=_t(entry))
    for record, done in owed:
        if (record.severity == message.severity and record.text == message.text
                and abs(record.t - message.t) <= OUTBOX_SKEW):
            if route.label in done:
                return AlertDeliveryView(route=route.label, method=route.kind,
                                         state="unknown",
                                         detail="finished (marked in the outbox); its outcome "
                                                "is not journaled yet")
            return AlertDeliveryView(route=route.label, method=route.kind, state="pending",
                                     detail="owed: in the store's outbox")
    return AlertDeliveryView(route=route.label, method=route.kind, state="unknown")
