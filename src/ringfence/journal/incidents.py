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
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ringfence.core.events import Fact
from ringfence.journal.events import Event, event_to_dict, peer_of

__all__ = [
    "BURST",
    "FAILURE_KINDS",
    "LEAD_IN",
    "LOOKBACK",
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

Severity = Literal["critical", "major", "warning"]
Resolution = Literal["verified", "unverified", "escalated"]
FencePath = Literal["fence agent", "watchdog", "self-fence", "clean shutdown"]
Verification = Literal["verified", "failed", "pending"]

WINDOW = 120.0  # seconds of inactivity after which a signal opens a new incident
BURST = 10.0  # failures this close to an incident's opening are part of it, whatever the host
LEAD_IN = 10.0  # a failure this close to an early warning grows the warning's incident
VERIFY_WAIT = 60.0  # seconds after the last recovery before "resolved without verification"
LOOKBACK = 24 * 3600.0  # root-cause evidence from before the incident: this far back

STARTUP_WAIT = 10.0
"""A host that waits for the store at start and joins within this many seconds had a normal
start (the store's bootstrap, a lock, an election), not a failure."""

FAILURE_KINDS = frozenset({
    "heartbeat_lost", "host_suspect", "host_fenced", "self_fence", "watchdog_reset",
    "lease_expired", "fence_agent_failed", "quorum_lost", "waiting_for_quorum",
    "failsafe_entered", "preexisting_split_brain", "storage_unwritable", "host_ineligible",
    "vm_crashed", "vm_failed", "vm_pending", "vm_verify_failed", "vm_start_failed",
    "vm_stop_failed", "hypervisor_error", "force_start", "force_start_pending",
    "force_start_refused", "reboot_overdue", "rejoin_blocked",
})
"""Kinds that open (or grow) an incident: something failed."""

WARNING_KINDS = frozenset({"link_down", "link_flapping", "memory_errors", "host_degraded"})
"""Kinds that open a ``warning`` incident before anything failed."""

# Events that keep an incident active (alerts, jeopardy and restored heartbeats do not: on a
# lossy link they never stop, and they must not keep one incident open for ever).
_ACTIVITY_KINDS = FAILURE_KINDS | WARNING_KINDS | frozenset({
    "vm_started", "vm_restarted", "vm_stopped", "vm_migrated", "vm_migrating", "vm_recovered",
    "vm_verified", "vm_released", "fence_started", "fence_agent_ok", "link_up",
    "quorum_gained", "host_healthy", "storage_writable", "host_alive", "nic_renamed",
    "host_shutdown", "failsafe_left", "rejoin_allowed",
})

# A host that had one of these in an incident is what the incident is about.
_HOST_FAULT_KINDS = frozenset({
    "host_suspect", "host_fenced", "fence_started", "fence_agent_ok", "fence_agent_failed",
    "self_fence", "watchdog_reset", "lease_expired", "host_shutdown", "link_down",
    "link_flapping", "host_degraded", "memory_errors", "storage_unwritable", "host_ineligible",
    "reboot_overdue", "nic_renamed",
})
_MAJOR_KINDS = frozenset({
    "host_suspect", "host_fenced", "self_fence", "watchdog_reset",
    "lease_expired", "fence_agent_failed", "quorum_lost", "waiting_for_quorum",
    "failsafe_entered", "storage_unwritable", "host_ineligible", "vm_failed", "vm_pending",
    "vm_start_failed", "vm_stop_failed", "force_start", "force_start_pending",
    "reboot_overdue", "rejoin_blocked",
})
_EVIDENCE_KINDS = frozenset({
    "link_down", "link_up", "link_flapping", "memory_errors", "host_degraded",
    "storage_unwritable", "storage_writable", "host_ineligible", "nic_renamed",
    "heartbeat_lost", "jeopardy", "quorum_lost", "self_fence", "watchdog_reset",
    "fence_agent_failed", "vm_crashed", "vm_verify_failed", "preexisting_split_brain",
    "host_shutdown", "reboot_overdue",
})
# Evidence worth looking back for before an incident opened (the early warnings of seed 000).
_LOOKBACK_KINDS = frozenset({
    "link_down", "link_flapping", "memory_errors", "host_degraded", "storage_unwritable",
    "vm_crashed", "watchdog_reset", "nic_renamed",
})
OPERATOR_KINDS = frozenset({
    "force_start", "force_start_pending", "force_start_waiting", "force_start_refused",
    "maintenance_on",
    "maintenance_off", "operator_refused", "vm_migrate_refused",
})
_FENCE_PROOF_KINDS = frozenset({"fence_agent_ok", "watchdog_reset", "host_fenced"})
_BOOT_KINDS = frozenset({"nic_renamed", "waiting_for_quorum", "watchdog_missing"})



# ====================================================================== results
SIGNS_WRITES = "the VM's own writes"
SIGNS_JOURNAL = "the agents' start and stop events"
"""Where a downtime figure comes from (`journal.downtime` has the one definition)."""


@dataclass(frozen=True)
class Outage:
    """One stretch during which a VM was down (or, `live`, moved by live migration)."""

    vm: str
    from_host: str | None
    to_host: str | None
    down_at: float
    back_at: float | None
    fence_path: FencePath | None
    cause: str
    live: bool
    exact: bool  # `down_at` comes from an explicit stop; else it is estimated (docstring)
    isolated_at: float | None  # when the VM was cut off from the network before it stopped
    verification: Verification
    verified_at: float | None
    operator: bool  # an operator's action stopped it
    note: str | None = None  # why it is still down (no place to run, left for an operator)
    down_earliest: float = 0.0  # the stop happened at or after this (last sign it ran)...
    down_latest: float = 0.0  # ...and at or before this (first proof it did not)

    @property
    def uncertain(self) -> bool:
        """Is the stop time known only to more than a second (nobody saw it happen)?"""
        return self.down_latest - self.down_earliest > 1.0

    def downtime(self, end: float) -> float:
        """Seconds down, counting an outage that has not ended up to `end`."""
        if self.live:
            return 0.0
        return max(0.0, (self.back_at if self.back_at is not None else end) - self.down_at)


@dataclass(frozen=True)
class VmImpact:
    """What an incident did to one VM (its outages, summed)."""

    vm: str
    from_host: str | None
    to_host: str | None
    down_at: float
    back_at: float | None
    downtime_s: float
    fence_path: FencePath | None
    verification: Verification
    verified_at: float | None
    interrupted_s: float  # from cut off (or down) until it answers (or runs) again
    outages: tuple[Outage, ...]
    downtime_source: str = SIGNS_JOURNAL  # the signs of life it is measured from

    @property
    def still_down(self) -> bool:
        return self.back_at is None

    @property
    def moved_live(self) -> bool:
        return all(o.live for o in self.outages)


@dataclass(frozen=True)
class Evidence:
    """A fact that explains the incident; `before`: journaled before the incident opened."""

    t: float
    kind: str
    host: str | None
    vm: str | None
    text: str
    before: bool
    fact: Fact


@dataclass(frozen=True)
class OperatorAction:
    t: float
    kind: str
    operator: str | None
    vm: str | None
    host: str | None
    text: str


@dataclass(frozen=True)
class Incident:
    id: str
    severity: Severity
    opened_at: float
    resolved_at: float | None
    resolution: Resolution | None
    title: str
    hosts: tuple[str, ...]
    vms: tuple[VmImpact, ...]
    evidence: tuple[Evidence, ...]
    operator_actions: tuple[OperatorAction, ...]
    events: tuple[Event, ...]
    stream_end: float
    superseded_by: str | None = None
    first_failure_at: float | None = None  # the first fault signal (not an early warning)
    waiting: tuple[str, ...] = ()  # VMs left without a place to run (pending, failed)

    @property
    def open(self) -> bool:
        return self.resolution is None

    @property
    def status(self) -> str:
        if self.resolution is None:
            return "open"
        return {"verified": "resolved", "unverified": "resolved without verification",
                "escalated": "escalated"}[self.resolution]

    @property
    def last_event_at(self) -> float:
        return self.events[-1].t if self.events else self.opened_at


# ====================================================================== pass 1: state
@dataclass
class _OutageDraft:
    vm: str
    from_host: str | None
    down_at: float
    cause: str
    live: bool
    exact: bool
    isolated_at: float | None
    operator: bool
    opened_index: int
    down_earliest: float = 0.0
    down_latest: float = 0.0
    closed_index: int | None = None
    to_host: str | None = None
    back_at: float | None = None
    verification: Verification = "pending"
    verified_at: float | None = None
    fence_path: FencePath | None = None
    self_fenced: bool = False
    clean: bool = False
    note: str | None = None
    planned: bool = False  # an operator's stop, a clean shutdown: never an outage


@dataclass
class _VmTrack:
    host: str | None = None
    running: bool = False
    started_at: float = 0.0
    outage: _OutageDraft | None = None  # open (down)
    last: _OutageDraft | None = None  # the latest closed one, awaiting its verification
    early_check: Event | None = None  # a target's check that came before the source's report


@dataclass
class _HostTrack:
    last_self: float | None = None
    lost_heard: float | None = None  # the latest time peers heard it, while it is lost
    lost_event: float | None = None  # when a peer first journaled that it lost it
    conn_onset: float | None = None  # first sign of its current connectivity problem
    shutting_down: bool = False
    boot_at: float | None = None  # the latest fresh start of its agent
    booting: bool = False  # between the first sign of a boot and the host's next other event
    life_before_boot: float | None = None
    problems: set[str] = field(default_factory=set)
    changes: list[tuple[float, bool]] = field(default_factory=list)  # (t, problem-free after)
    fences: list[tuple[float, FencePath]] = field(default_factory=list)
    lost_by: set[str] = field(default_factory=set)  # who journaled that they lost it
    reset_at: float | None = None  # reset by its watchdog, or off by a fence, while silent


class _Pass1:
    """Walk the stream once: VM placement, outages, host problems and fencing proofs."""

    def __init__(self, events: Sequence[Event],
                 vms_of_host_at: Callable[[str, float], Iterable[str]] | None) -> None:
        self.vms_of_host_at = vms_of_host_at
        self.vms: dict[str, _VmTrack] = {}
        self.hosts: dict[str, _HostTrack] = {}
        self.opens: list[list[_OutageDraft]] = [[] for _ in events]
        self.move_source: dict[int, str] = {}
        self.outages: list[_OutageDraft] = []
        self.forced: dict[str, float] = {}
        self.quiet: set[int] = set()  # silence that a clean shutdown announced, short waits
        self.waits: dict[str, tuple[int, float]] = {}  # host -> its open waiting_for_quorum
        self.last_up: dict[str, int] = {}  # VM -> index of its last start
        for index, event in enumerate(events):
            self._step(index, event)
        if events:
            self._still_lost(len(events) - 1, events[-1].t)

    def host(self, name: str) -> _HostTrack:
        return self.hosts.setdefault(name, _HostTrack())

    def vm(self, name: str) -> _VmTrack:
        return self.vms.setdefault(name, _VmTrack())

    # ------------------------------------------------------------------ the walk
    def _step(self, i: int, e: Event) -> None:
        kind, host, vm = e.kind, e.host, e.vm
        if host is not None and self.host(host).shutting_down and kind in (
                "heartbeat_lost", "host_suspect", "lease_expired"):
            self.quiet.add(i)
        if host is not None and kind == "waiting_for_quorum" and e.by == host:
            self.waits.setdefault(host, (i, e.t))
        if host is not None and kind == "host_joined" and e.by == host:
            wait = self.waits.pop(host, None)
            if wait is not None and e.t - wait[1] <= STARTUP_WAIT:
                self.quiet.add(wait[0])  # a start that waited a moment for the store
        if host is not None and kind in _BOOT_KINDS | {"host_joined"} and e.by == host:
            self._booted(i, e, host)
        if host is not None and kind == "execution_gap":
            self._gap(i, e, host)
        if vm is not None:
            self._vm_event(i, e, vm)
        if host is not None and kind in _FENCE_PROOF_KINDS:
            self._fenced(i, e, host)
        if host is not None and kind == "lease_expired" and e.by != host:
            # The protocol's promise: a host stops its VMs before its lease can expire (it
            # self-fences at its own deadline, or it is dead). So the leader seeing the lease
            # gone bounds their end, whether or not anyone fences the host afterwards.
            self._lose_vms_of(i, e.t, host)
        if kind == "vm_migrating" and host is not None:
            self.move_source[i] = host
        if host is not None:
            self._problems(e, host)
        for name in e.observers:
            track = self.host(name)
            track.last_self = e.t
            if kind not in _BOOT_KINDS and kind != "host_joined":
                track.booting = False

    def _still_lost(self, i: int, end: float) -> None:
        """At the end of the stream, a host that most of its peers lost, and that has said
        nothing since (no restore, no boot, no proof, no event of its own): its VMs are down or
        unknown since it went silent."""
        others = len(self.hosts) - 1
        for name, track in sorted(self.hosts.items()):
            lost_at = track.lost_event
            if (track.lost_heard is None or lost_at is None or track.shutting_down
                    or track.fences or 2 * len(track.lost_by - {name}) <= others):
                continue
            if track.last_self is None or track.last_self <= lost_at:
                self._lose_vms_of(i, lost_at, name)

    def _gap(self, i: int, e: Event, host: str) -> None:
        """The host's agent says it did not run for a while (`execution_gap`): the host hung
        (its guests frozen too) or only the agent was stopped (its guests ran on). From
        inside one can not tell either, so its VMs were down at most that long: a range."""
        gap = e.duration if e.duration is not None else 0.0
        if gap <= 0:
            return
        since = e.t - gap
        for vm, track in sorted(self.vms.items()):
            if not (track.running and track.host == host and track.outage is None):
                continue
            draft = _OutageDraft(vm, host, since, f"{host}'s agent did not run for {gap:.1f}s "
                                 f"(a hang freezes its guests too)", live=False, exact=False,
                                 isolated_at=None, operator=False, opened_index=i,
                                 down_earliest=since, down_latest=e.t, closed_index=i,
                                 to_host=host, back_at=e.t, verification="verified",
                                 verified_at=e.t)
            self.opens[i].append(draft)
            self.outages.append(draft)
            track.last = draft

    def _booted(self, i: int, e: Event, host: str) -> None:
        """A host that was lost journals from a fresh boot: its VMs died with it."""
        track = self.host(host)
        if not track.booting:  # the first sign of this boot (several events announce one)
            track.booting = True
            track.boot_at, track.life_before_boot = e.t, track.last_self
        if track.lost_heard is not None:
            self._lose_vms_of(i, e.t, host)

    def _fenced(self, i: int, e: Event, host: str) -> None:
        method: FencePath
        if e.kind in ("watchdog_reset", "fence_agent_ok"):
            track = self.host(host)
            track.reset_at = e.t if track.reset_at is None else min(track.reset_at, e.t)
        if e.kind == "watchdog_reset" or (e.kind == "host_fenced"
                                          and (e.fact.method or "").startswith("watchdog")):
            method = "watchdog"
        else:
            method = "fence agent"
        self.host(host).fences.append((e.t, method))
        self._lose_vms_of(i, e.t, host)

    def _lose_vms_of(self, i: int, t: float, host: str) -> None:
        names = [v for v, track in sorted(self.vms.items())
                 if track.running and track.host == host]
        if self.vms_of_host_at is not None:
            for name in sorted(self.vms_of_host_at(host, t)):
                track = self.vm(name)
                if name not in names and track.host is None and track.outage is None:
                    track.host, track.running = host, True
                    names.append(name)
        for name in sorted(names):
            self._host_loss(i, t, name, host)

    def _host_loss(self, i: int, t: float, vm: str, host: str) -> _OutageDraft:
        """`vm` stopped running on `host` because the host was lost (estimated, docstring)."""
        track, h = self.vm(vm), self.host(host)
        isolated: float | None = None
        life = h.last_self if h.last_self is not None and h.last_self <= t else None
        if h.lost_heard is None:
            down = earliest = life if life is not None else track.started_at
            latest = t
            cause = f"stopped with {host} (last sign of life)"
        elif life is not None and life > h.lost_heard:
            earliest, down, latest = life, t, t
            isolated = h.conn_onset if h.conn_onset is not None else h.lost_heard
            cause = f"ran cut off on {host} until {host} was fenced"
        else:
            down = earliest = h.lost_heard
            latest = min(t, h.lost_event if h.lost_event is not None else t)
            cause = f"died with {host} (no heartbeat from it after that)"
            if h.reset_at is not None and h.reset_at >= h.lost_heard:
                # Proven by its watchdog or a fence: a host that lost power and one whose agent
                # stalled (its VMs running on until the reset) look the same from outside.
                latest = h.reset_at
                cause = (f"stopped with {host} between its last heartbeat and its reset "
                         f"(watchdog or fence)")
        floor = track.started_at
        draft = _OutageDraft(vm, host, min(t, max(down, floor)), cause, live=False,
                             exact=False, isolated_at=isolated, operator=self._operator(vm, t),
                             opened_index=i, down_earliest=min(t, max(earliest, floor)),
                             down_latest=max(latest, floor))
        self._open(i, track, draft)
        return draft

    def _died_in_reboot(self, i: int, t: float, vm: str, host: str) -> None:
        """`vm` starts on `host` again although no stop was seen: `host` restarted (a power
        loss nobody observed), and the VM died with it after its last sign of life."""
        track, h = self.vm(vm), self.host(host)
        boot = h.boot_at if h.boot_at is not None else t
        life = h.life_before_boot if h.life_before_boot is not None else track.started_at
        earliest = max(life, track.started_at)
        draft = _OutageDraft(vm, host, earliest, f"died when {host} lost power or crashed "
                             f"(it restarted; nobody saw it go)", live=False, exact=False,
                             isolated_at=None, operator=False, opened_index=i,
                             down_earliest=earliest, down_latest=max(earliest, boot))
        self._open(i, track, draft)

    def _operator(self, vm: str, t: float) -> bool:
        forced = self.forced.get(vm)
        return forced is not None and t - forced <= VERIFY_WAIT

    def _open(self, i: int, track: _VmTrack, draft: _OutageDraft) -> None:
        track.running = False
        track.outage = draft
        self.opens[i].append(draft)
        self.outages.append(draft)

    def _vm_event(self, i: int, e: Event, vm: str) -> None:
        kind, host, track = e.kind, e.host, self.vm(vm)
        if kind in ("force_start", "force_start_pending"):
            self.forced[vm] = e.t
        if kind in ("vm_started", "vm_restarted") or (
                kind == "force_start" and e.fact.cause == "without_quorum"):
            if host is not None:
                self._vm_up(i, e, vm, host)
        elif kind == "vm_migrated" and host is not None:
            source = e.fact.source or track.host
            if source is not None:
                self.move_source[i] = source
            self._vm_moved(i, e, vm, source, host)
        elif kind in ("vm_stopped", "vm_crashed") and host is not None:
            if track.running and track.host == host:
                fenced = e.fact.cause in ("self_fence", "fenced")
                draft = _OutageDraft(vm, host, e.t, _stop_words(e), live=False, exact=True,
                                     isolated_at=None,
                                     operator=kind == "vm_stopped" and (
                                         e.fact.cause == "operator"
                                         or self._operator(vm, e.t)),
                                     opened_index=i,
                                     down_earliest=e.t, down_latest=e.t,
                                     self_fenced=fenced,
                                     clean=kind == "vm_stopped" and not fenced,
                                     planned=e.planned)
                self._open(i, track, draft)
        elif kind == "vm_recovered":
            self._recovered(i, e, vm, track)
        elif kind in ("vm_failed", "vm_pending"):
            if track.outage is not None:
                track.outage.note = e.text
        elif kind in ("vm_verified", "vm_verify_failed"):
            self._verified(e, track)

    def _recovered(self, i: int, e: Event, vm: str, track: _VmTrack) -> None:
        """The leader moves `vm`'s lease: if we still think it runs on its old host, it was
        lost with that host (a stream that began after the VM started, or a missed stop)."""
        old = e.fact.source if e.fact.cause in ("host_lost", "handed_back") else None
        if track.outage is not None or old is None:
            return
        if (track.running and track.host == old) or track.host is None:
            track.host = old
            self._host_loss(i, e.t, vm, old)

    def _vm_up(self, i: int, e: Event, vm: str, host: str) -> None:
        track, h = self.vm(vm), self.host(host)
        self.last_up[vm] = i
        if track.outage is None and track.running and track.host not in (None, host):
            assert track.host is not None
            self._host_loss(i, e.t, vm, track.host)
        elif (track.outage is None and track.running and track.host == host
              and h.boot_at is not None and h.boot_at > track.started_at):
            self._died_in_reboot(i, e.t, vm, host)
        if track.outage is not None:
            self._close(track.outage, host, e.t, i)
            track.last, track.outage = track.outage, None
        elif track.running and track.host == host:
            return  # the same run (a new token, a second report)
        track.host, track.running, track.started_at = host, True, e.t

    def _vm_moved(self, i: int, e: Event, vm: str, source: str | None, target: str) -> None:
        track = self.vm(vm)
        self.last_up[vm] = i
        if track.outage is not None:
            self._close(track.outage, target, e.t, i)
            track.last, track.outage = track.outage, None
        else:
            # A source nobody heard before the migration may have been frozen (a hang) from
            # its last heartbeat until it handed the guest over: say so, as a range.
            lost = self.host(source).lost_heard if source is not None else None
            since = min(e.t, lost) if lost is not None else e.t
            draft = _OutageDraft(vm, source, since, f"live-migrated from {source} to {target}"
                                 + ("" if lost is None else f" after {source} was not heard "
                                                            f"for {e.t - since:.1f}s"),
                                 live=lost is None, exact=lost is None, isolated_at=None,
                                 operator=False, opened_index=i, down_earliest=since,
                                 down_latest=e.t, closed_index=i, to_host=target, back_at=e.t)
            self.opens[i].append(draft)
            self.outages.append(draft)
            track.last = draft
        track.host, track.running, track.started_at = target, True, e.t
        early, track.early_check = track.early_check, None
        if early is not None and early.host == target:
            self._verified(early, track)

    def _close(self, draft: _OutageDraft, host: str, t: float, i: int) -> None:
        draft.to_host, draft.back_at, draft.closed_index = host, t, i
        draft.fence_path = self._fence_path(draft, t)

    def _fence_path(self, draft: _OutageDraft, until: float) -> FencePath | None:
        if draft.live or draft.from_host is None:
            return None
        proofs = [(t, method) for t, method in self.host(draft.from_host).fences
                  if draft.down_at - 1.0 <= t <= until]
        if proofs:
            return proofs[-1][1]
        if draft.self_fenced:
            return "self-fence"
        if draft.clean:
            return "clean shutdown"
        return None

    def _verified(self, e: Event, track: _VmTrack) -> None:
        draft = track.last
        if track.outage is None and track.running and e.host not in (None, track.host):
            # The target of a live migration checked the guest before the source's cycle
            # reported the migration done: keep it for the `vm_migrated` that follows.
            track.early_check = e
            return
        if track.outage is not None or draft is None or draft.to_host != e.host:
            return
        if e.kind == "vm_verified":
            if draft.verification != "verified":
                draft.verification, draft.verified_at = "verified", e.t
        elif draft.verification != "verified":
            draft.verification = "failed"

    # ------------------------------------------------------------------ host problems
    def _problems(self, e: Event, host: str) -> None:
        h, kind, mine = self.host(host), e.kind, e.by == host
        before = not h.problems
        nic = _nic(e)
        if kind == "heartbeat_lost":
            h.lost_by.update(e.observers)
            timeout = e.duration or 0.0
            heard = e.last_t - timeout
            if h.lost_heard is None:
                h.lost_event = e.t
            h.lost_heard = heard if h.lost_heard is None else max(h.lost_heard, heard)
            if h.conn_onset is None:
                h.conn_onset = e.t
            if not h.shutting_down:
                h.problems.add("unreachable")
        elif kind in ("heartbeat_restored", "host_alive"):
            h.lost_by.clear()
            h.lost_heard = h.lost_event = None
            h.problems -= {"unreachable", "suspect"}
        elif kind == "host_suspect" and not h.shutting_down:
            h.problems.add("suspect")
        elif kind in ("host_fenced", "fence_agent_ok", "watchdog_reset", "self_fence",
                      "reboot_overdue") or (kind == "lease_expired" and not h.shutting_down):
            h.problems -= {"unreachable", "suspect"}
            h.problems.add("down")
        elif kind == "host_shutdown":
            h.shutting_down = True
        elif kind in ("quorum_gained", "host_joined") and mine:
            fresh = kind == "host_joined"
            h.problems -= {"quorum", "down", "unreachable", "suspect"}
            if fresh:
                h.problems = {p for p in h.problems if p.startswith("carrier:")}
                h.shutting_down = False
                h.lost_heard = h.lost_event = None
        elif kind in ("quorum_lost", "waiting_for_quorum", "rejoin_blocked") and mine:
            h.problems.add("quorum")
            if h.conn_onset is None:
                h.conn_onset = e.t
        elif kind == "link_down" and mine:
            h.problems.add(f"carrier:{nic}")
            if h.conn_onset is None:
                h.conn_onset = e.t
        elif kind == "link_up" and mine:
            h.problems.discard(f"carrier:{nic}")
        elif kind == "link_flapping" and mine:
            h.problems.add(f"flapping:{nic}")
        elif kind in ("host_degraded", "memory_errors") and mine:
            h.problems.add("degraded")
        elif kind == "host_ineligible" and mine:
            h.problems.add("ineligible")
        elif kind == "storage_unwritable" and mine:
            h.problems.add(f"storage:{e.fact.datastore}")
        elif kind == "storage_writable" and mine:
            h.problems.discard(f"storage:{e.fact.datastore}")
        elif kind == "host_healthy" and mine:
            h.problems = {p for p in h.problems if p in ("quorum", "down", "unreachable",
                                                         "suspect", "failsafe")}
        elif kind == "failsafe_entered":
            h.problems.add("failsafe")
        elif kind == "failsafe_left":
            h.problems.discard("failsafe")
        connected = not any(p.startswith("carrier:") or p in ("unreachable", "quorum")
                            for p in h.problems)
        if connected and h.lost_heard is None:
            h.conn_onset = None
        after = not h.problems
        if after != before:
            h.changes.append((e.t, after))

    def clear_time(self, host: str, since: float) -> float | None:
        """The first time at or after `since` when `host` had no problem left."""
        h = self.hosts.get(host)
        if h is None:
            return since
        state = True
        for t, clear in h.changes:
            if t > since:
                break
            state = clear
        if state:
            return since
        for t, clear in h.changes:
            if t > since and clear:
                return t
        return None


def _nic(e: Event) -> str:
    """A NIC event's interface, as people name it: ``eth0 (ring0)``."""
    return f"{e.fact.nic or '?'} ({e.fact.network or '?'})"


def _stop_words(e: Event) -> str:
    """Why a VM stopped, in words, from its cause (for the outage's cause line)."""
    cause = e.fact.cause
    if e.kind == "vm_crashed":
        return "died"
    return {
        "self_fence": "destroyed by self-fence",
        "fenced": f"destroyed: {e.host} has fenced itself",
        "operator": f"stopped by {e.fact.operator or 'an operator'}",
        "lease_moved": f"stopped on {e.host}: its lease is no longer held here",
        "shutdown": f"stopped on {e.host}: clean {e.fact.reason or 'shutdown'}",
    }.get(cause or "", f"stopped on {e.host}" + (f": {e.fact.reason}" if e.fact.reason
                                                  else ""))


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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``, ``a, b, c and 2 more``."""
    if len(items) > 4:
        return f"{', '.join(items[:3])} and {len(items) - 3} more"
    if len(items) > 1:
        return f"{', '.join(items[:-1])} and {items[-1]}"
    return items[0] if items else ""


def _predicate(host: str, own: list[Event], outages: Sequence[Outage]) -> str | None:
    """What went wrong with `host`, in a few plain words (headline style), or None."""
    about = [e for e in own if e.host == host]
    kinds = {e.kind for e in about}
    downs = [e for e in about if e.kind == "link_down"]
    lost = {"host_suspect", "host_fenced", "self_fence", "quorum_lost", "heartbeat_lost"}
    if downs and lost & kinds:
        first = downs[0].t
        nics = sorted({_nic(e) for e in downs if e.t - first <= 1.0})
        return f"lost carrier on {', '.join(nics)}"
    if downs and "host_ineligible" in kinds:
        nics = sorted({_nic(e) for e in downs})
        return f"lost carrier on {', '.join(nics)}, unfit to run VMs"
    if "memory_errors" in kinds and not lost & kinds:
        return "reported corrected memory errors"
    if "link_flapping" in kinds and not lost & kinds:
        nics = sorted({_nic(e) for e in about if e.kind == "link_flapping"})
        return f"carrier flapping on {', '.join(nics)}"
    if "host_shutdown" in kinds:
        stop = next(e for e in about if e.kind == "host_shutdown")
        return "rebooted cleanly" if stop.fact.reason == "reboot" else "shut down cleanly"
    if any(o.from_host == host and o.cause.startswith("died when")
           for o in outages):
        return "restarted without warning (a power loss or crash nobody saw)"
    if kinds & {"heartbeat_lost", "host_suspect", "lease_expired", "host_fenced"}:
        first = min(e.t for e in about if e.kind in ("heartbeat_lost", "host_suspect",
                                                      "lease_expired", "host_fenced"))
        proof = min((e.t for e in about if e.kind in _FENCE_PROOF_KINDS), default=math.inf)
        alive = any(host in e.observers and first - 1.0 <= e.t < proof
                    and e.kind not in _BOOT_KINDS and e.kind != "host_joined" for e in own)
        if not kinds & {"host_suspect", "lease_expired", "host_fenced", "self_fence"}:
            return "briefly not heard on any heartbeat link"
        return "cut off from the cluster" if alive or "quorum_lost" in kinds \
            else "stopped answering"
    if "storage_unwritable" in kinds:
        stores = sorted({e.fact.datastore or "?" for e in about
                         if e.kind == "storage_unwritable"})
        return f"datastore {', '.join(stores)} not writable"
    if "host_ineligible" in kinds:
        return "unfit to run VMs"
    if downs:
        return f"lost carrier on {', '.join(sorted({_nic(e) for e in downs}))}"
    if kinds & {"quorum_lost", "waiting_for_quorum", "failsafe_entered"}:
        return "lost the cluster store"
    if "nic_renamed" in kinds:
        return "came back with renamed interfaces"
    return None


def _grouped(hosts: Sequence[str], phrase: Callable[[str], str | None]) -> list[str]:
    """`hosts` grouped by the same phrase: ``["a and b stopped answering", ...]``."""
    groups: dict[str, list[str]] = {}
    for host in hosts:
        said = phrase(host)
        if said is not None:
            groups.setdefault(said, []).append(host)
    return [f"{_names(members)} {said}" for said, members in groups.items()]


def _fence_phrase(host: str, own: list[Event]) -> str | None:
    fenced = [e for e in own if e.kind == "host_fenced" and e.host == host]
    if fenced:
        return ("fenced by watchdog" if (fenced[0].fact.method or "").startswith("watchdog")
                else "fenced by fence agent")
    if any(e.kind == "self_fence" and e.host == host for e in own):
        return "fenced itself"
    return None


def _title(hosts: tuple[str, ...], own: list[Event], vms: tuple[VmImpact, ...],
           waiting: list[str], actions: tuple[OperatorAction, ...]) -> str:
    outages = [o for v in vms for o in v.outages]
    parts = _grouped(hosts, lambda h: _predicate(h, own, outages))
    fences = _grouped(hosts, lambda h: _fence_phrase(h, own))
    if len(hosts) == 1 and parts and fences:
        fences = [f.removeprefix(f"{hosts[0]} ") for f in fences]
    parts += [f.replace(" and ", " and ", 1).replace("fenced itself", "fenced themselves")
              if " and " in f.split(" fenced")[0] else f for f in fences]
    if any(e.kind == "storage_unwritable" for e in own) and not any(
            "not writable" in p for p in parts):
        stores = sorted({e.fact.datastore or "?" for e in own
                         if e.kind == "storage_unwritable"})
        parts.append(f"datastore {', '.join(stores)} not writable after boot")
    crashes: dict[str, int] = {}
    for e in own:
        if e.kind == "vm_crashed" and e.vm:
            crashes[e.vm] = crashes.get(e.vm, 0) + 1
    for vm, count in sorted(crashes.items()):
        parts.append(f"{vm} crashed" + (f" {count} times" if count > 1 else ""))
    forced = [a for a in actions if a.kind == "force_start" and a.operator and a.vm]
    if forced:
        first = forced[0]
        parts.append(f"{first.operator} forced {first.vm} onto {first.host}")
    refused = [a for a in actions if a.kind == "force_start_refused"]
    if refused:
        parts.append(f"{_plural(len(refused), 'conflicting forced start')} refused")
    split = [e for e in own if e.kind == "preexisting_split_brain"]
    if split:
        parts.append(f"split brain evidence for {_names(sorted({e.vm or '?' for e in split}))}")
    moved = [v for v in vms if v.moved_live]
    restarted = [v for v in vms if not v.moved_live and not v.still_down]
    elsewhere = [v for v in restarted
                 if any(o.to_host != o.from_host for o in v.outages if not o.live)]
    if moved:
        parts.append(f"{_plural(len(moved), 'VM')} moved away by live migration")
    if elsewhere:
        parts.append(f"{_plural(len(elsewhere), 'VM')} restarted elsewhere")
    if len(elsewhere) < len(restarted):
        parts.append(f"{_plural(len(restarted) - len(elsewhere), 'VM')} restarted in place")
    failed = sorted({e.vm for e in own if e.kind == "vm_failed" and e.vm in waiting})
    if failed:
        parts.append(f"{_names(failed)} left stopped for an operator")
    homeless = [vm for vm in waiting if vm not in failed]
    if homeless:
        parts.append(f"no place to run {_names(homeless)}")
    down = sorted({v.vm for v in vms if v.still_down} - set(waiting))
    if down:
        parts.append(f"{_names(down)} {'is' if len(down) == 1 else 'are'} still down")
    return "; ".join(parts) if parts else "Trouble in the cluster"


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
