"""When a firing alert is resolved: the incident it belongs to, built from the cluster's journal.

An alert of severity ``warning`` or ``critical`` that the leader's outbox took is also *firing*
(``alerts/firing/<id>`` in the store, written in the same transaction as its outbox record). Its
``alert_sent`` event carries the alert's id (the journal field ``alert``), so the incidents built
from the store's copy of every host's journal (`journal.incidents.build_incidents`, the same
incidents `ringfence incident` and the dashboard show) say which incident each alert belongs
to. The alert is resolved when that incident is, as seen live:

* resolved ``verified``: every affected VM runs again and answered its check (or, without
  affected VMs, every host it is about passes its checks again);
* resolved ``unverified``: every affected VM runs again, and each one that has a check
  configured (``vms[].verify``) has had `VERIFY_WAIT` seconds to answer it (a VM without a
  check is resolved when it runs: running is all that can be known of it);
* ``escalated`` (a warning incident that a failure followed): when the incident it escalated
  into is resolved.

An open incident, a VM still down or one whose check failed keeps the alert firing. An alert
whose event is in no incident (nothing it is about failed: a rate-limited warning, a store
mismatch) stays firing until `EXPIRE` after it was raised, and is then forgotten without a
notice (Alertmanager has ended it by itself by then: `http_routes.RESOLVE_AFTER`).

Pure: no store, no clock; the worker (`alerts.worker`) reads the store and writes the outcome.
Never raises for odd journal entries (an entry that does not load is left out).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ringfence.alerts.routes import AlertMessage
from ringfence.errors import ConfigError
from ringfence.journal.incident_model import VERIFY_WAIT, Incident

__all__ = ["EXPIRE", "FIRING", "Verdict", "firing_key", "settle"]

FIRING = "alerts/firing/"
EXPIRE = 3600.0
"""Seconds after which a firing alert that belongs to no resolved incident is forgotten."""


def firing_key(alert_id: str) -> str:
    return f"{FIRING}{alert_id}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one firing alert: resolve it (`why` says by which incident) or forget
    it (expired)."""

    alert: AlertMessage
    resolve: bool
    why: str


def _events(entries: Sequence[Mapping[str, Any]]) -> list[Any]:
    from ringfence.journal.events import from_entries

    try:
        return from_entries(entries, source="journal")
    except ConfigError:  # one bad entry: load them one by one, leaving out what does not load
        events = []
        for entry in entries:
            try:
                events.extend(from_entries([entry], source="journal"))
            except ConfigError:
                continue
        events.sort(key=lambda e: (e.t, e.by or "", e.seq))
        return events


def _settled(incident: Incident, now: float, checked: Collection[str]) -> bool:
    if incident.resolution == "verified":
        return True
    if incident.resolution != "unverified":
        return False
    for vm in incident.vms:
        if vm.back_at is None:
            return False
        if vm.vm in checked and vm.verification != "verified" and now < vm.back_at + VERIFY_WAIT:
            return False  # it may still answer its check
    return True


def settle(firing: Sequence[AlertMessage], entries: Sequence[Mapping[str, Any]], now: float,
           checked_vms: Collection[str] = ()) -> list[Verdict]:
    """The firing alerts to resolve now, and those to forget (see the module docstring).
    `entries`: the store's journal (`journal.store_mirror.read_store_journal`); `now`: wall
    clock; `checked_vms`: the VMs with a configured check."""
    if not firing:
        return []
    from ringfence.journal.incidents import build_incidents

    events = _events(entries)
    incidents = build_incidents(events, stream_end=now) if events else []
    by_id = {i.id: i for i in incidents}
    of_alert: dict[str, Incident] = {}
    for each in incidents:
        for event in each.events:
            if event.kind == "alert_sent" and event.fact.alert:
                of_alert.setdefault(event.fact.alert, each)
    verdicts = []
    for alert in firing:
        incident: Incident | None = of_alert.get(alert.id)
        if incident is not None and incident.resolution == "escalated":
            incident = by_id.get(incident.superseded_by or "")
        if incident is not None and _settled(incident, now, checked_vms):
            verdicts.append(Verdict(alert, True,
                                    f"incident {incident.id} resolved, {incident.resolution}"))
        elif now - alert.t >= EXPIRE:
            verdicts.append(Verdict(alert, False, "expired"))
    return verdicts
