"""The cluster as the API, the dashboard and `/metrics` show it: built from one source.

Everything here is computed from a :class:`~ringfence.api.source.ClusterSource` (the status
document and the journal) and never raises for what the store or the journal holds: a store
that does not answer gives hosts with state ``unknown`` and VMs without a host; a damaged
journal entry is skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ringfence.api.models import (
    AlertView,
    ClusterView,
    HostView,
    IncidentSummary,
    JournalEntry,
    PeerLinks,
    StoreView,
    VmImpactView,
    VmView,
)
from ringfence.api.source import ClusterSource
from ringfence.errors import ConfigError
from ringfence.journal.incidents import Incident

__all__ = ["Snapshot", "Snapshots", "build_incidents"]

HISTORY_KINDS = frozenset({
    "vm_started", "vm_stopped", "vm_migrated", "vm_migrating", "vm_recovered", "vm_verified",
    "vm_verify_failed", "vm_crashed", "vm_restarted", "vm_released", "vm_pending", "vm_failed",
    "force_start", "force_start_refused", "vm_migrate_refused", "vm_stop_requested",
    "vm_start_requested", "vm_relocating", "vm_adopted",
})


@dataclass(frozen=True)
class Snapshot:
    """One consistent read: the status document, the journal, and what follows from them."""

    status: dict[str, Any]
    journal: list[dict[str, Any]]
    incidents: list[Incident]
    taken_at: float
    outbox: list[dict[str, Any]] = field(default_factory=list)

    @property
    def quorum(self) -> bool:
        return bool(self.status["store"]["quorum"])

    def cluster(self, source: ClusterSource) -> ClusterView:
        config = source.config
        store = self.status["store"]
        timing = config.timing
        return ClusterView(
            name=config.name,
            store=StoreView(kind=store["kind"], members=list(store["members"]),
                            quorum=bool(store["quorum"]), revision=store.get("revision"),
                            error=store.get("error")),
            leader=self.status.get("leader"),
            timing={"heartbeat_interval": timing.heartbeat_interval,
                    "host_lease_ttl": timing.host_lease_ttl,
                    "watchdog_timeout": timing.watchdog_timeout,
                    "safety_margin": timing.safety_margin,
                    "fence_timeout": timing.fence_timeout,
                    "store_timeout": timing.effective_store_timeout},
            hosts=len(config.hosts), vms=len(config.vms),
            open_incidents=sum(1 for i in self.incidents if i.open))

    def failsafe(self) -> dict[str, bool]:
        """Per host: did its last failsafe event enter failsafe?"""
        state: dict[str, bool] = {}
        for entry in self.journal:
            if entry.get("kind") in ("failsafe_entered", "failsafe_left"):
                state[str(entry.get("host") or entry.get("by"))] = (
                    entry["kind"] == "failsafe_entered")
        return state

    def hosts(self, source: ClusterSource) -> list[HostView]:
        failsafe = self.failsafe()
        known = self.status.get("hosts", {})
        views = []
        for spec in source.config.hosts:
            record = known.get(spec.name)
            if record is None:
                views.append(HostView(name=spec.name, state="unknown", lease_age_s=None,
                                      incarnation=None, health=None, links={},
                                      leader=False, failsafe=failsafe.get(spec.name, False)))
                continue
            links = {peer: PeerLinks(state=str(v.get("state", "unknown")),
                                     alive=list(v.get("alive", [])), dead=list(v.get("dead", [])))
                     for peer, v in sorted(record.get("links", {}).items())
                     if isinstance(v, dict)}
            views.append(HostView(
                name=spec.name, state=record["state"], lease_age_s=record["lease_age_s"],
                incarnation=record["incarnation"], health=record["health"], links=links,
                leader=self.status.get("leader") == spec.name,
                failsafe=failsafe.get(spec.name, False)))
        return views

    def vms(self, source: ClusterSource, *, history: bool = False) -> list[VmView]:
        moved: dict[str, str] = {}
        verified: dict[str, float] = {}
        past: dict[str, list[dict[str, Any]]] = {}
        for entry in self.journal:
            vm, kind = entry.get("vm"), entry.get("kind")
            if not isinstance(vm, str):
                continue
            if kind in ("vm_recovered", "vm_migrated", "force_start") and entry.get("source"):
                moved[vm] = str(entry["source"])
            if kind == "vm_verified":
                verified[vm] = float(entry.get("t", 0))
            if history and kind in HISTORY_KINDS:
                past.setdefault(vm, []).append(entry)
        known = self.status.get("vms", {})
        views = []
        for spec in source.config.vms:
            record = known.get(spec.name, {"host": None, "token": None, "state": "unknown"})
            views.append(VmView(
                name=spec.name, host=record["host"], token=record["token"],
                state=record["state"], moved_from=moved.get(spec.name),
                last_verified=verified.get(spec.name),
                history=[journal_entry(e) for e in past.get(spec.name, [])[-50:]]))
        return views

    def alerts(self, source: ClusterSource, limit: int = 10) -> list[AlertView]:
        """The last `limit` alerts raised, newest first, with their delivery by every route
        (`api.alert_view`)."""
        from ringfence.api.alert_view import recent_alerts

        return recent_alerts(self.journal, self.outbox, source.config.alerts, limit)

    def incident_summaries(self) -> list[IncidentSummary]:
        return [incident_summary(i) for i in self.incidents]


def journal_entry(entry: dict[str, Any]) -> JournalEntry:
    return JournalEntry.model_validate(entry)


def incident_summary(incident: Incident) -> IncidentSummary:
    return IncidentSummary(
        id=incident.id, severity=incident.severity, status=incident.status,
        title=incident.title, opened_at=round(incident.opened_at, 3),
        resolved_at=(round(incident.resolved_at, 3) if incident.resolved_at is not None
                     else None),
        hosts=list(incident.hosts),
        vms=[VmImpactView(vm=v.vm, from_host=v.from_host, to_host=v.to_host,
                          downtime_s=round(v.downtime_s, 1), still_down=v.still_down)
             for v in incident.vms],
        report_md=f"/api/v1/incidents/{incident.id}/report.md",
        report_html=f"/api/v1/incidents/{incident.id}/report.html")


def _loadable(entry: dict[str, Any]) -> bool:
    t, kind = entry.get("t"), entry.get("kind")
    return (isinstance(t, int | float) and not isinstance(t, bool) and isinstance(kind, str)
            and all(entry.get(k) is None or isinstance(entry.get(k), str)
                    for k in ("by", "host", "vm", "text"))
            and (entry.get("seq") is None or type(entry.get("seq")) is int))


def build_incidents(entries: Sequence[dict[str, Any]], now: float) -> list[Incident]:
    """The incidents of the journal (entries that do not load are left out)."""
    from ringfence.journal.events import from_entries
    from ringfence.journal.incidents import build_incidents as build

    try:
        events = from_entries([e for e in entries if _loadable(e)], source="journal")
    except ConfigError:
        return []
    return build(events, stream_end=now)


class Snapshots:
    """Reads of one source; incidents are computed again only when the journal changed, or
    every `refresh` seconds (the downtime of an open incident grows)."""

    def __init__(self, source: ClusterSource, refresh: float = 5.0) -> None:
        self.source = source
        self.refresh = refresh
        self._lock = threading.Lock()
        self._stamp: tuple[int, float] | None = None
        self._at = 0.0
        self._incidents: list[Incident] = []

    def take(self) -> Snapshot:
        status = self.source.status()
        journal = self.source.journal()
        outbox = self.source.outbox()
        now = time.time()
        stamp = (len(journal), float(journal[-1].get("t", 0) or 0) if journal else 0.0)
        with self._lock:
            if stamp == self._stamp and now - self._at < self.refresh:
                return Snapshot(status, journal, self._incidents, now, outbox)
        incidents = build_incidents(journal, now)
        with self._lock:
            self._stamp, self._at, self._incidents = stamp, now, incidents
        return Snapshot(status, journal, incidents, now, outbox)
