"""Pass 2 of incident building: events grouped into incidents: failures and early warnings
open or grow one, related events join the one they concern, planned work joins only the
timeline (unless it went wrong: then its outage counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ringfence.journal.events import Event, peer_of
from ringfence.journal.incident_model import (
    _ACTIVITY_KINDS,
    BURST,
    FAILURE_KINDS,
    LEAD_IN,
    WARNING_KINDS,
)
from ringfence.journal.outages import _OutageDraft, _Pass1


# ====================================================================== pass 2: grouping
@dataclass
class _Draft:
    opened_at: float
    first_index: int
    last_activity: float
    warning_only: bool = True
    involved: set[str] = field(default_factory=set)
    vms: set[str] = field(default_factory=set)
    indexes: list[int] = field(default_factory=list)
    outages: list[_OutageDraft] = field(default_factory=list)
    superseded_by: _Draft | None = None
    superseded_at: float | None = None
    last_signal: float = 0.0
    first_failure: float | None = None

    def has_open_outage(self, index: int) -> bool:
        """Is one of its VMs still down just before event `index`?"""
        return any(not o.live and (o.closed_index is None or o.closed_index >= index)
                   for o in self.outages)


def _classify(i: int, e: Event, p1: _Pass1) -> str:
    if any(not o.live and not o.planned for o in p1.opens[i]):
        return "failure"
    if e.planned:
        return "related"  # planned work: in the timeline of what it overlaps, nothing more
    if i in p1.quiet:
        return "related"  # a host that said it shuts down cleanly is expected to go quiet
    if e.kind in FAILURE_KINDS:
        return "failure"
    if e.kind in WARNING_KINDS:
        return "warning"
    return "related"


def _subjects(i: int, e: Event, p1: _Pass1) -> tuple[set[str], set[str]]:
    hosts = {h for h in (e.host, peer_of(e), p1.move_source.get(i)) if h}
    vms = {o.vm for o in p1.opens[i]}
    if e.vm:
        vms.add(e.vm)
    for draft in p1.opens[i]:
        if draft.from_host:
            hosts.add(draft.from_host)
    return hosts, vms


def _group(events: Sequence[Event], p1: _Pass1, window: float) -> list[_Draft]:
    drafts: list[_Draft] = []
    active: list[_Draft] = []  # may still take events; once out of it, a draft never returns
    warnings: list[_Draft] = []  # early-warning drafts not (yet) superseded
    planned = [o for o in p1.outages if o.planned]
    for i, e in enumerate(events):
        cls = _classify(i, e, p1)
        hosts, vms = _subjects(i, e, p1)
        active = [d for d in active if d.superseded_by is None and (
            e.t - d.last_activity <= window or d.has_open_outage(i))]
        live = active
        by_vm = [d for d in live if d.vms & vms]
        by_host = [d for d in live if d.involved & hosts]
        candidates = (by_vm or by_host) if e.vm else (by_host or by_vm)
        match = max(candidates, key=lambda d: (d.last_activity, -d.first_index), default=None)
        target: _Draft | None = None
        if cls in ("failure", "warning"):
            if match is not None and (cls == "warning" or not match.warning_only
                                      or e.t - match.last_activity <= LEAD_IN):
                target = match
            elif cls == "failure":
                burst = [d for d in live if not d.warning_only and e.t - d.opened_at <= BURST]
                target = max(burst, key=lambda d: (d.opened_at, -d.first_index), default=None)
            if target is None:
                target = _Draft(e.t, i, e.t)
                for other in warnings:
                    if other.warning_only and other.involved & hosts:
                        other.superseded_by, other.superseded_at = target, e.t
                warnings = [d for d in warnings if d.warning_only and d.superseded_by is None]
                drafts.append(target)
                active.append(target)
                warnings.append(target)
            target.involved |= hosts
            target.last_signal = e.t
            if cls == "failure":
                target.warning_only = False
                if target.first_failure is None:
                    target.first_failure = e.t
        elif match is not None:
            target = match
        if target is None:
            continue
        target.indexes.append(i)
        target.vms |= vms if cls != "related" or p1.opens[i] else (vms & target.vms)
        target.outages.extend(o for o in p1.opens[i] if not o.planned)
        if cls == "failure":
            for outage in _planned_gone_wrong(planned, i, hosts, target.vms | vms):
                target.outages.append(outage)
                target.vms.add(outage.vm)
                # Its planned beginning (the stop, the host's clean shutdown) joins the
                # timeline: the report tells how the outage began.
                start = outage.opened_index
                began = {j for j in range(max(0, start - 50), min(len(events), start + 50))
                         if j == start or (events[j].kind == "host_shutdown"
                                           and events[j].host == outage.from_host
                                           and abs(outage.down_at - events[j].t) <= 1.0)}
                target.indexes = sorted(set(target.indexes) | began)
        if e.kind in _ACTIVITY_KINDS or p1.opens[i]:
            target.last_activity = max(target.last_activity, e.t)
    return drafts


def _planned_gone_wrong(planned: list[_OutageDraft], index: int, hosts: set[str],
                        vms: set[str]) -> list[_OutageDraft]:
    """Planned outages (a clean reboot, an operator's stop) still open at event `index`, a
    failure about their host or VM: the VM did not come back as planned (seed 003: rebooted
    cleanly, then its storage was not writable), so the whole outage counts, from its start,
    as the incident's downtime (never under-reported). Each is taken once."""
    found = []
    for outage in planned:
        if (outage.planned and outage.opened_index < index
                and (outage.closed_index is None or outage.closed_index > index)
                and (outage.vm in vms or outage.from_host in hosts)):
            outage.planned = False
            found.append(outage)
    return found


