"""Pass 1 of incident building: one walk over the event stream that tracks where each VM runs,
when it stops and comes back (its outages, with the fence path that made the restart safe and
its verification), hosts' boots, shutdowns and problems, and the fencing proofs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ringfence.journal.events import Event
from ringfence.journal.incident_model import (
    _BOOT_KINDS,
    _FENCE_PROOF_KINDS,
    STARTUP_WAIT,
    VERIFY_WAIT,
    FencePath,
    Verification,
)


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


