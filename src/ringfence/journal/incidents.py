"""Incidents: the journal's events correlated into what happened, to whom, and how it ended.

Pure functions of an event stream (:mod:`ringfence.journal.events`); no I/O, no clock. The same
events give the same incidents, numbered the same way, in the same order.

What is decided here, in two passes over the stream:

1. **Where each VM was, and when it was down.** A VM is down from an explicit ``vm_stopped``
   or ``vm_crashed`` on the host it ran on, or from the loss of that host, until it runs again
   (``vm_started``, ``vm_restarted``, a forced start without quorum, or ``vm_migrated``). The
   loss of a host is dated from the events alone:

   - *the host died or hung* (nothing it journaled comes after the last heartbeat its peers
     heard): its VMs stopped when it was last heard, i.e. the first ``heartbeat_lost`` about it
     minus the heartbeat timeout that event states ("... for 0.8s");
   - *the host was cut off but alive* (it journaled something after its peers stopped hearing
     it: a probe, a ``heartbeat_lost`` of its own): its VMs kept running, isolated, until the
     first proof that they stopped (``fence_agent_ok``, ``watchdog_reset``, ``host_fenced``), or
     until an explicit stop (a self-fence journals ``vm_stopped``);
   - with no heartbeat loss journaled at all, the host's last sign of life.

   In the simulator these estimates agree with the ground truth (`World.runs`) within one
   heartbeat interval; the tests check that. Which fence path made the restart safe is read from
   the fencing events about the old host between the stop and the restart: ``fence agent``,
   ``watchdog`` (lease expiry plus the watchdog deadline, or a watchdog reset), ``self-fence``
   (the host destroyed its VMs itself and nothing else was needed), or ``clean shutdown``.

2. **Which events belong together.** A *fault signal* (:data:`FAILURE_KINDS`, or any event that
   took a VM down) or an *early warning* (:data:`WARNING_KINDS`) joins the incident that covers
   its host or VM and was active within ``window`` seconds; otherwise a failure joins an incident
   opened by another failure less than :data:`BURST` seconds earlier (one fault shows as a burst
   of signals on several hosts: a dead store member makes its peers lose quorum); otherwise it
   opens a new incident. Other events join an incident that covers their host or VM, or are not
   part of any incident. Early warnings open a ``warning`` incident of their own; a fault signal
   more than :data:`LEAD_IN` seconds after that warning's last activity opens a new incident,
   and the warning incident is marked ``escalated`` into it (its evidence is carried into the
   new incident's root-cause evidence through the 24-hour look-back).

Resolution: an incident with affected VMs is resolved when every one of them is running again
and a ``vm_verified`` came after its last restart (resolved at the last verification); if a VM
is running again but no verification came within ``verify_wait`` seconds of the last recovery,
or before the stream ends, it is resolved *without verification*, which the reports say
loudly. A failed check, or a VM still down, leaves the incident open. An incident without
affected VMs is resolved once every host it is about passes its checks again (carrier back,
storage writable, host healthy, rejoined the cluster). Severity: ``critical`` when a VM went
down unplanned, is still down, failed its check, or a split brain was found; ``major`` when a
host was lost, fenced, unfit or without quorum, or an operator's action stopped a VM;
``warning`` otherwise.

Nothing here raises on odd streams (events out of order are taken in the order given, unknown
kinds are treated as related information): a report of a bad day must never fail.

The parts: `incident_model` (the result types, kinds and constants), `outages` (pass 1),
`incident_grouping` (pass 2), `incident_titles`; this module finishes the incidents (impact,
resolution, severity, evidence, title) and re-exports the model.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ringfence.journal.events import Event, event_to_dict
from ringfence.journal.incident_grouping import _Draft, _group
from ringfence.journal.incident_model import (
    _EVIDENCE_KINDS,
    _HOST_FAULT_KINDS,
    _LOOKBACK_KINDS,
    _MAJOR_KINDS,
    BURST,
    FAILURE_KINDS,
    LEAD_IN,
    LOOKBACK,
    OPERATOR_KINDS,
    SIGNS_JOURNAL,
    SIGNS_WRITES,
    VERIFY_WAIT,
    WARNING_KINDS,
    WINDOW,
    Evidence,
    Incident,
    OperatorAction,
    Outage,
    Resolution,
    Severity,
    VmImpact,
)
from ringfence.journal.incident_titles import _title
from ringfence.journal.outages import _OutageDraft, _Pass1

__all__ = [
    "BURST",
    "FAILURE_KINDS",
    "LEAD_IN",
    "LOOKBACK",
    "OPERATOR_KINDS",
    "SIGNS_JOURNAL",
    "SIGNS_WRITES",
    "WARNING_KINDS",
    "Evidence",
    "Incident",
    "OperatorAction",
    "Outage",
    "VmImpact",
    "build_incidents",
    "final_host_states",
    "incident_to_dict",
]



# ====================================================================== finishing
def _primary_hosts(draft: _Draft, events: Sequence[Event]) -> tuple[str, ...]:
    own = [events[i] for i in draft.indexes]
    primary = {e.host for e in own if e.host and e.kind in _HOST_FAULT_KINDS}
    primary |= {o.from_host for o in draft.outages if o.from_host and not o.live}
    for e in own:
        if e.kind == "heartbeat_lost" and e.host and not set(e.observers) & primary:
            primary.add(e.host)
    if not primary:
        primary = {e.host for e in own if e.host and (e.kind in FAILURE_KINDS
                                                     or e.kind in WARNING_KINDS)}
    return tuple(sorted(primary))


def _impacts(draft: _Draft, end: float) -> tuple[VmImpact, ...]:
    by_vm: dict[str, list[_OutageDraft]] = {}
    for outage in draft.outages:
        by_vm.setdefault(outage.vm, []).append(outage)
    impacts = []
    for vm in sorted(by_vm):
        drafts = sorted(by_vm[vm], key=lambda o: (o.down_at, o.opened_index))
        outages = tuple(_freeze(d) for d in drafts)
        first, last = outages[0], outages[-1]
        fenced = [o.fence_path for o in outages if o.fence_path is not None]
        interrupted = sum(
            (o.verified_at or o.back_at or end) - min(o.down_at, o.isolated_at or o.down_at)
            for o in outages if not o.live)
        impacts.append(VmImpact(
            vm=vm, from_host=first.from_host, to_host=last.to_host, down_at=first.down_at,
            back_at=last.back_at, downtime_s=round(sum(o.downtime(end) for o in outages), 3),
            fence_path=fenced[-1] if fenced else None, verification=last.verification,
            verified_at=last.verified_at, interrupted_s=round(max(0.0, interrupted), 3),
            outages=outages))
    return tuple(impacts)


def _freeze(d: _OutageDraft) -> Outage:
    return Outage(vm=d.vm, from_host=d.from_host, to_host=d.to_host, down_at=d.down_at,
                  back_at=d.back_at, fence_path=d.fence_path, cause=d.cause, live=d.live,
                  exact=d.exact, isolated_at=d.isolated_at, verification=d.verification,
                  verified_at=d.verified_at, operator=d.operator, note=d.note,
                  down_earliest=d.down_earliest, down_latest=d.down_latest)


def _waiting_vms(draft: _Draft, events: Sequence[Event], p1: _Pass1) -> list[str]:
    """VMs the incident left without a place to run (pending or failed, never started since)."""
    waiting = set()
    for i in draft.indexes:
        e = events[i]
        if e.kind in ("vm_pending", "vm_failed") and e.vm and p1.last_up.get(e.vm, -1) < i:
            waiting.add(e.vm)
    return sorted(waiting)


def _resolve(draft: _Draft, vms: tuple[VmImpact, ...], hosts: tuple[str, ...], p1: _Pass1,
             end: float, verify_wait: float, waiting: list[str]
             ) -> tuple[Resolution | None, float | None]:
    resolution: Resolution | None = None
    resolved_at: float | None = None
    if waiting:
        pass  # a VM has no place to run: nothing is resolved
    elif vms:
        if all(v.back_at is not None for v in vms):
            last_back = max(v.back_at for v in vms if v.back_at is not None)
            if all(v.verification == "verified" for v in vms):
                resolution = "verified"
                resolved_at = max(v.verified_at or 0.0 for v in vms)
            elif not any(v.verification == "failed" for v in vms):
                resolution = "unverified"
                resolved_at = max(last_back, min(last_back + verify_wait, end))
    else:
        times = [p1.clear_time(h, draft.last_signal) for h in hosts]
        if all(t is not None for t in times):
            resolution = "verified"
            resolved_at = max([t for t in times if t is not None] or [draft.last_signal])
    if draft.superseded_at is not None and (
            resolution is None or (resolved_at is not None and resolved_at > draft.superseded_at)):
        return "escalated", draft.superseded_at
    return resolution, resolved_at


def _severity(own: list[Event], vms: tuple[VmImpact, ...], waiting: list[str]) -> Severity:
    unplanned = any(not o.live and not o.operator for v in vms for o in v.outages)
    if unplanned or any(v.still_down or v.verification == "failed" for v in vms) or any(
            e.kind == "preexisting_split_brain" for e in own):
        return "critical"
    if waiting or any(not o.live for v in vms for o in v.outages) or any(
            e.kind in _MAJOR_KINDS for e in own):
        return "major"
    return "warning"


def _evidence(draft: _Draft, events: Sequence[Event], early: Sequence[int],
              early_times: Sequence[float], hosts: tuple[str, ...]) -> tuple[Evidence, ...]:
    """The incident's own explanatory events, after what its hosts showed in the
    `LOOKBACK` before it opened (earlier carrier losses, memory errors, crashes...).
    `early` indexes the stream's `_LOOKBACK_KINDS` events, `early_times` their times."""
    members = set(draft.indexes)
    found: list[Evidence] = []
    start = bisect.bisect_left(early_times, draft.opened_at - LOOKBACK)
    for i in early[start:bisect.bisect_left(early, draft.first_index)]:
        e = events[i]
        if i not in members and e.host in hosts:
            found.append(Evidence(e.t, e.kind, e.host, e.vm, e.text, True, e.fact))
    for i in draft.indexes:
        e = events[i]
        if e.kind in _EVIDENCE_KINDS:
            found.append(Evidence(e.t, e.kind, e.host, e.vm, e.text, False, e.fact))
    return tuple(found)


def _operator_actions(own: list[Event]) -> tuple[OperatorAction, ...]:
    actions = []
    for e in own:
        if e.kind not in OPERATOR_KINDS:
            continue
        actions.append(OperatorAction(e.t, e.kind, e.fact.operator, e.vm, e.host, e.text))
    return tuple(actions)


def build_incidents(events: Sequence[Event], *,
                    vms_of_host_at: Callable[[str, float], Iterable[str]] | None = None,
                    window: float = WINDOW, verify_wait: float = VERIFY_WAIT,
                    stream_end: float | None = None) -> list[Incident]:
    """Correlate a sorted event stream into incidents (see the module docstring).

    `vms_of_host_at(host, t)` names the VMs a host ran at time `t` where the stream does not
    show it (a journal that begins after the VMs started); `stream_end` is when the stream
    was cut (default: its last event), for VMs still down and for resolution without
    verification."""
    if not events:
        return []
    end = stream_end if stream_end is not None else events[-1].t
    p1 = _Pass1(events, vms_of_host_at)
    drafts = _group(events, p1, window)
    drafts.sort(key=lambda d: (d.opened_at, d.first_index))
    ids = {id(d): f"INC-{n:04d}" for n, d in enumerate(drafts, start=1)}
    early = [i for i, e in enumerate(events) if e.kind in _LOOKBACK_KINDS]
    early_times = [events[i].t for i in early]
    incidents = []
    for draft in drafts:
        own = [events[i] for i in draft.indexes]
        hosts = _primary_hosts(draft, events)
        vms = _impacts(draft, end)
        waiting = _waiting_vms(draft, events, p1)
        actions = _operator_actions(own)
        resolution, resolved_at = _resolve(draft, vms, hosts, p1, end, verify_wait, waiting)
        incidents.append(Incident(
            id=ids[id(draft)], severity=_severity(own, vms, waiting), opened_at=draft.opened_at,
            resolved_at=resolved_at, resolution=resolution,
            title=_title(hosts, own, vms, waiting, actions), hosts=hosts, vms=vms,
            evidence=_evidence(draft, events, early, early_times, hosts), operator_actions=actions,
            events=tuple(own), stream_end=end, waiting=tuple(waiting),
            superseded_by=ids[id(draft.superseded_by)] if draft.superseded_by else None,
            first_failure_at=draft.first_failure))
    return incidents


def final_host_states(events: Sequence[Event]) -> dict[str, str]:
    """Each host's last known state from the journal alone (for a status page built from
    journals): ``online``, ``degraded``, ``ineligible``, ``suspect``, ``fenced``,
    ``waiting_for_quorum`` or ``offline`` (shut down cleanly)."""
    p1 = _Pass1(events, None)
    states: dict[str, str] = {}
    for name, h in sorted(p1.hosts.items()):
        if h.last_self is None and not h.problems:
            continue  # only ever named by others (a witness, a peer in a text): not a host
        problems = h.problems
        if "down" in problems:
            state = "fenced"
        elif problems & {"unreachable", "suspect"}:
            state = "suspect"
        elif "quorum" in problems:
            state = "waiting_for_quorum"
        elif h.shutting_down:
            state = "offline"
        elif "ineligible" in problems or any(p.startswith(("storage:", "carrier:"))
                                             for p in problems):
            state = "ineligible"
        elif problems:
            state = "degraded"
        else:
            state = "online"
        states[name] = state
    return states


# ====================================================================== JSON
def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def incident_to_dict(incident: Incident, *, with_events: bool = True) -> dict[str, Any]:
    """The JSON form of an incident (``incident show --json``, ``status.json``)."""
    document: dict[str, Any] = {
        "id": incident.id, "severity": incident.severity, "status": incident.status,
        "title": incident.title, "opened_at": _r(incident.opened_at),
        "resolved_at": _r(incident.resolved_at), "resolution": incident.resolution,
        "superseded_by": incident.superseded_by,
        "first_failure_at": _r(incident.first_failure_at), "hosts": list(incident.hosts),
        "waiting": list(incident.waiting),
        "vms": [
            {"vm": v.vm, "from_host": v.from_host, "to_host": v.to_host,
             "down_at": _r(v.down_at), "back_at": _r(v.back_at), "downtime_s": v.downtime_s,
             "downtime_source": v.downtime_source,
             "interrupted_s": v.interrupted_s, "fence_path": v.fence_path,
             "verification": v.verification, "verified_at": _r(v.verified_at),
             "outages": [
                 {"from_host": o.from_host, "to_host": o.to_host, "down_at": _r(o.down_at),
                  "back_at": _r(o.back_at), "live": o.live, "exact": o.exact,
                  "cause": o.cause, "fence_path": o.fence_path,
                  "verification": o.verification, "note": o.note}
                 for o in v.outages]}
            for v in incident.vms],
        "evidence": [{"t": _r(e.t), "kind": e.kind, "host": e.host, "vm": e.vm,
                      "text": e.text, "before": e.before} for e in incident.evidence],
        "operator_actions": [{"t": _r(a.t), "kind": a.kind, "operator": a.operator,
                              "vm": a.vm, "host": a.host, "text": a.text}
                             for a in incident.operator_actions],
    }
    if with_events:
        document["events"] = [event_to_dict(e) for e in incident.events]
    return document
