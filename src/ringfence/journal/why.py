"""`ringfence why VM`: the chain of evidence behind each of a VM's moves, from the journal.

A *move* is the VM arriving on a host other than the one it last ran on: a restart elsewhere
(`vm_started` on the new host), a live migration (`vm_migrated`) or a forced start without
quorum (`force_start`, cause ``without_quorum``). For each move the chain is read from the
events' fields, never from their text:

- **detection**: what said the VM had to leave its host: the observers that stopped hearing it
  (on which links, for how long), the leader's suspicion and the lease time left, the host's own
  failure reports (self-fence, lost lease, failed probes, a crash), or the planned work or
  operator request that asked for the move; when nobody alive saw the host go (the whole
  cluster was down), the store's expiry of its lease, found when a host came back;
- **proof**: why the old copy could not run any more when the new one started: the host fenced
  (how, and the fence agent's own output), its lease gone from the store, the old holder
  having stopped and released the VM, a clean shutdown that told the store, or, for a live
  migration, the hand-over itself (the source stops its copy at the switch-over);
- **decision** and **placement**: the leader's decision and, per host, why it was or was not
  chosen (`vm_recovered.reasons`, `core.explain`), or the reason of a migration, or the
  operator who forced it;
- **start** and **verification**: the start on the new host and the first check that it
  answers (or that it failed).

Events are searched between the VM's previous arrival and this one: a chain never borrows
evidence from an earlier move. A part that the journal does not hold is left empty (and says
so when rendered): `why` reports what was journaled, it does not invent a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ringfence.journal.events import Event, event_to_dict

__all__ = ["Move", "MoveKind", "VmHistory", "explain_vm", "history_to_dict", "render_history"]

MoveKind = Literal["restart", "relocation", "live_migration", "forced", "returned"]

# What made a VM leave its host, about that host (or the VM itself).
_DETECTION_KINDS = frozenset({
    "heartbeat_lost", "jeopardy", "host_suspect", "self_fence", "lease_lost", "quorum_lost",
    "host_shutdown", "reboot_overdue", "host_ineligible", "host_degraded", "storage_unwritable",
    "memory_errors", "link_flapping", "link_down", "vm_crashed", "vm_failed", "vm_start_failed",
    "vm_stop_requested", "vm_start_requested", "operator_request", "maintenance_on",
    "failsafe_entered", "failsafe_left", "execution_gap",
})
# What brings a VM back to a host it was drained from (about the host it returns to).
_RETURN_KINDS = frozenset({"maintenance_off", "host_healthy", "host_joined", "host_alive"})
# Why the old copy could not run any more, about the old host (or the VM on it).
_PROOF_KINDS = frozenset({
    "host_fenced", "fence_agent_ok", "fence_agent_failed", "fence_started", "lease_expired",
    "self_fence", "watchdog_reset", "host_shutdown", "vm_stopped", "vm_released",
    "force_start_pending",
})
_DECISION_KINDS = frozenset({"vm_recovered", "vm_relocating", "vm_migrating", "force_start"})
_VM_KINDS = frozenset({"vm_crashed", "vm_failed", "vm_start_failed", "vm_stop_requested",
                       "vm_start_requested", "operator_request", "vm_stopped", "vm_released"})


@dataclass(frozen=True)
class Move:
    """One arrival of the VM on a new host, with its chain of evidence (module docstring)."""

    kind: MoveKind
    source: str
    target: str
    detection: tuple[Event, ...]
    proof: tuple[Event, ...]
    decision: Event | None
    placement: tuple[str, ...]
    start: Event
    verification: Event | None

    @property
    def at(self) -> float:
        return self.start.t


@dataclass(frozen=True)
class VmHistory:
    """A VM's first start (if journaled), its moves, and where it was last seen running."""

    vm: str
    first: Event | None
    moves: tuple[Move, ...]
    last_host: str | None


def _arrival(e: Event, vm: str) -> str | None:
    """The host `e` says `vm` now runs on, or None when `e` is no arrival."""
    if e.vm != vm or e.host is None:
        return None
    if e.kind in ("vm_started", "vm_migrated"):
        return e.host
    if e.kind == "force_start" and e.fact.cause == "without_quorum":
        return e.host
    return None


def _about(e: Event, vm: str, host: str) -> bool:
    if e.vm is not None:
        return e.vm == vm and (e.kind in _VM_KINDS or e.host in (host, None))
    return e.host == host or (e.kind == "jeopardy" and e.fact.peer == host)


def _first_of_each(events: Sequence[Event]) -> tuple[Event, ...]:
    """The first event of each (kind, host, writer): a flapping link says it once here."""
    seen: set[tuple[str, str | None, str | None]] = set()
    kept = []
    for e in events:
        key = (e.kind, e.host, e.by)
        if key not in seen:
            seen.add(key)
            kept.append(e)
    return tuple(kept)


def _decision(window: Sequence[Event], vm: str, target: str) -> Event | None:
    for e in reversed(window):
        if e.vm != vm or e.kind not in _DECISION_KINDS:
            continue
        if e.kind == "vm_migrating" and e.fact.target == target:
            return e
        if e.kind != "vm_migrating" and e.host == target:
            return e
    return None


def _kind(decision: Event | None, arrival: Event) -> MoveKind:
    if arrival.kind == "vm_migrated":
        cause = arrival.fact.cause or (decision.fact.cause if decision else None)
        return "returned" if cause in ("return", "failback") else "live_migration"
    if arrival.kind == "force_start" or (decision is not None and decision.kind == "force_start"):
        return "forced"
    if decision is not None and decision.kind == "vm_relocating":
        return "relocation"
    return "restart"


def _placement(decision: Event | None, target: str) -> tuple[str, ...]:
    if decision is None:
        return ()
    fact = decision.fact
    if fact.reasons:
        return fact.reasons
    if decision.kind == "force_start":
        return (f"{target}: chosen by {fact.operator or 'an operator'} (forced start)",)
    if fact.reason:
        return (f"{target}: chosen ({fact.reason})",)
    return (f"{target}: chosen",)


def _move(events: Sequence[Event], start: int, index: int, vm: str, source: str,
          target: str) -> Move:
    window = events[start:index]
    arrival = events[index]
    decision = _decision(window, vm, target)
    kind = _kind(decision, arrival)
    cut = window if decision is None else window[:window.index(decision) + 1]
    detection = [e for e in cut if e.kind in _DETECTION_KINDS and _about(e, vm, source)]
    if kind == "returned":
        detection += [e for e in cut if e.kind in _RETURN_KINDS and e.host == target]
        detection.sort(key=lambda e: e.t)
    if decision is not None and decision.fact.operator and decision.kind != "vm_recovered":
        detection.append(decision)  # the operator's request is the reason it moved
    if not detection:
        # Nobody alive saw it go (the whole cluster was down): the first sign is the store
        # no longer holding its lease, found when a host came back.
        detection = [e for e in cut if e.kind == "lease_expired" and e.host == source][:1]
    if kind in ("live_migration", "returned"):
        proof: list[Event] = [arrival]  # the hand-over: the source stopped its copy
    else:
        proof = [e for e in window if e.kind in _PROOF_KINDS and _about(e, vm, source)
                 and not (e.kind == "vm_stopped" and e.host != source)]
    verification = None
    for e in events[index + 1:]:
        if _arrival(e, vm) is not None:
            break
        if e.vm == vm and e.host == target and e.kind in ("vm_verified", "vm_verify_failed"):
            verification = e
            break
    return Move(kind, source, target, _first_of_each(detection), _first_of_each(proof),
                decision, _placement(decision, target), arrival, verification)


def explain_vm(events: Sequence[Event], vm: str) -> VmHistory:
    """Every move of `vm` in `events` (sorted by time, as `journal.events` gives them)."""
    where: str | None = None
    first: Event | None = None
    since = 0
    moves: list[Move] = []
    for index, e in enumerate(events):
        host = _arrival(e, vm)
        if host is None:
            continue
        if where is None:
            first = first or e
        elif host != where:
            moves.append(_move(events, since, index, vm, where, host))
        where, since = host, index + 1
    return VmHistory(vm, first, tuple(moves), where)


# ---------------------------------------------------------------------- output
def history_to_dict(history: VmHistory) -> dict[str, Any]:
    def many(found: Sequence[Event]) -> list[dict[str, Any]]:
        return [event_to_dict(e) for e in found]

    return {
        "vm": history.vm,
        "first_start": event_to_dict(history.first) if history.first else None,
        "last_host": history.last_host,
        "moves": [{
            "kind": m.kind, "source": m.source, "target": m.target, "at": round(m.at, 3),
            "detection": many(m.detection), "proof": many(m.proof),
            "decision": event_to_dict(m.decision) if m.decision else None,
            "placement": list(m.placement), "start": event_to_dict(m.start),
            "verification": event_to_dict(m.verification) if m.verification else None,
        } for m in history.moves],
    }


_TITLES: dict[MoveKind, str] = {
    "restart": "restarted elsewhere", "relocation": "relocated from an unfit host",
    "live_migration": "live-migrated", "forced": "forced on by an operator",
    "returned": "migrated back",
}


def render_history(history: VmHistory, when: Any) -> str:
    """Plain text; `when(t)` formats a time (`journal.report.fmt_time` with its context)."""
    lines: list[str] = []
    if history.first is not None:
        lines.append(f"{history.vm} first started on {history.first.host} at "
                     f"{when(history.first.t)}.")
    if not history.moves:
        lines.append(f"{history.vm} never moved in this journal"
                     + (f"; last seen on {history.last_host}." if history.last_host else "."))
        return "\n".join(lines) + "\n"
    lines.append(f"{history.vm} moved {len(history.moves)} time(s); last seen on "
                 f"{history.last_host}.")

    def part(label: str, found: Sequence[Event], missing: str) -> None:
        if not found:
            lines.append(f"   {label:<13}{missing}")
            return
        for n, e in enumerate(found):
            also = f" (also {', '.join(b or '?' for b, _ in e.also)})" if e.also else ""
            lines.append(f"   {label if n == 0 else '':<13}{when(e.t)} {e.text}{also}")

    for number, m in enumerate(history.moves, 1):
        lines.append("")
        lines.append(f"{number}. {m.source} → {m.target}: {_TITLES[m.kind]} at {when(m.at)}")
        part("detection", m.detection, "nothing journaled about why it left")
        part("proof", m.proof, "no fence or lease proof journaled")
        part("decision", (m.decision,) if m.decision else (), "no decision journaled")
        if m.placement:
            lines.append(f"   {'placement':<13}{m.placement[0]}")
            lines.extend(f"   {'':<13}{note}" for note in m.placement[1:])
        part("start", (m.start,), "")
        part("verified", (m.verification,) if m.verification else (),
             "no check journaled after the start")
    return "\n".join(lines) + "\n"
