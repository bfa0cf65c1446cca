"""Judging a lab run with the simulator's own checker, and the same JSON document.

`LabWorld` is an adapter: it offers what `ringfence.sim.checker` and
`ringfence.sim.runner.to_json` read from a simulated `World` (``runs``, ``entries``,
``alerts``, ``faults``, ``starts``, ``host_state``, ``host_state_since``), filled from what the
lab recorded: runs from the VMs' disk writes (`ringfence.lab.truth`), entries from the hosts'
journal files merged with the few the lab itself journals, alerts from the journals'
``alert_sent`` entries, and host states from both (below). The checker is not copied: it is
called, and so is `to_json`.

Host states. The simulator reads them from the leader's view and each agent's own state at
every instant; the lab has only what was journaled, plus power facts. A host's state at time t
is built the same way, from the latest relevant journal entries before t:

* the leader's view: ``host_suspect`` about the host makes it ``suspect``, ``host_fenced``
  makes it ``fenced``; ``host_alive`` ends both, and so does the host's own agent reaching the
  store again after it booted (``host_joined`` or ``quorum_gained`` by it, or any entry it
  journals once the store answers it);
* the host's own view (entries it journaled about itself): ``waiting_for_quorum`` until
  ``host_joined`` or ``quorum_gained``; ``self_fence`` (fenced) until it gains the store
  again; ``jeopardy`` until ``heartbeat_restored``; ``host_ineligible`` / ``host_degraded`` until
  ``host_healthy``; ``maintenance_on`` until ``maintenance_off``; ``host_shutdown`` (offline);
* power: off or booting reads ``offline``, and a boot clears the host's own view;

combined with the simulator's precedence (`ringfence.sim.world.World.host_state`).

Tolerance. Real time is not simulated time: each time point of an expectation gets a stated
tolerance (``--tolerance``, default 1 s), in the lenient direction only: ``running_on`` and
``state`` hold if they hold at some instant within ``at`` ± tolerance; an ``event`` may come
up to the tolerance before ``from`` or after ``to``; ``not_running_on`` and ``no_event``
intervals shrink by it at both ends; an ``alert`` may come up to the tolerance after ``by``.
``max_downtime`` bounds get none. Every verdict carries the tolerance it was judged with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ringfence.lab.records import AppliedFault, LabRecords
from ringfence.sim.checker import Outcome, evaluate, split_brains
from ringfence.sim.runner import SimulationResult, to_json
from ringfence.sim.scenario import Expectation, Scenario
from ringfence.sim.timeline import Timeline
from ringfence.sim.world import Alert, JournalEntry, Run

if TYPE_CHECKING:
    from ringfence.sim.world import World

_VIEW_SET = {"host_suspect": "suspect", "host_fenced": "fenced"}
_LOCAL_SET = {"waiting_for_quorum": "waiting_for_quorum", "self_fence": "fenced",
              "host_ineligible": "ineligible", "host_degraded": "degraded",
              "host_shutdown": "offline"}


@dataclass
class HostStates:
    """One host's power, leader's view and own view, as timelines on the lab's clock."""

    power: Timeline[str]
    view: Timeline[str | None] = field(default_factory=lambda: Timeline[str | None](None))
    local: Timeline[str | None] = field(default_factory=lambda: Timeline[str | None](None))
    jeopardy: Timeline[bool] = field(default_factory=lambda: Timeline[bool](False))
    maintenance: Timeline[bool] = field(default_factory=lambda: Timeline[bool](False))

    def state(self, t: float) -> str:
        power = self.power.at(t)
        view = self.view.at(t)
        local = self.local.at(t)
        if view in ("fenced", "suspect"):
            return view
        if power in ("off", "booting"):
            return "offline"
        if local in ("fenced", "waiting_for_quorum", "offline"):
            return local
        if local == "ineligible" and power == "up":
            return local
        if self.jeopardy.at(t) and power == "up":
            return "jeopardy"
        if local == "degraded" and power == "up":
            return local
        if self.maintenance.at(t):
            return "maintenance"
        return "online"

    def change_times(self) -> list[float]:
        return sorted({t for timeline in (self.power, self.view, self.local, self.jeopardy,
                                          self.maintenance) for t in timeline.times})


def build_host_states(records: LabRecords, entries: list[JournalEntry],
                      by: dict[int, str]) -> dict[str, HostStates]:
    """Host states from power facts and journal entries (`by[id(entry)]`: who wrote it)."""
    states = {h: HostStates(records.power[h]) for h in records.hosts}
    booted: dict[str, bool] = dict.fromkeys(records.hosts, False)
    events: list[tuple[float, int, str, Any]] = []
    for host, timeline in records.power.items():
        for t, value in timeline.changes():
            events.append((t, 0, "power", (host, value)))
    for entry in entries:
        events.append((entry.t, 1, "entry", entry))
    for t, _order, what, item in sorted(events, key=lambda e: (e[0], e[1])):
        if what == "power":
            host, value = item
            if value in ("off", "booting"):
                states[host].local.set(t, None)
                states[host].jeopardy.set(t, False)
            if value == "up":
                booted[host] = True
            continue
        entry = cast(JournalEntry, item)
        writer = by.get(id(entry))
        about = entry.host
        if about in states and entry.kind in _VIEW_SET:
            states[about].view.set(t, _VIEW_SET[entry.kind])
        elif about in states and entry.kind == "host_alive":
            states[about].view.set(t, None)
        if about in states and entry.kind in ("maintenance_on", "maintenance_off"):
            # The leader journals an operator's maintenance request about another host.
            states[about].maintenance.set(t, entry.kind == "maintenance_on")
            continue
        if writer is None or writer != about or about not in states:
            if entry.kind == "heartbeat_restored" and writer in states:
                states[writer].jeopardy.set(t, False)
            continue
        own = states[about]
        if entry.kind in _LOCAL_SET:
            own.local.set(t, _LOCAL_SET[entry.kind])
        elif entry.kind in ("quorum_gained", "host_joined"):
            if own.local.at(t) in ("waiting_for_quorum", "fenced"):
                own.local.set(t, None)
            if own.view.at(t) == "fenced":
                own.view.set(t, None)
        elif entry.kind == "host_healthy":
            own.local.set(t, None)
        elif entry.kind == "jeopardy":
            own.jeopardy.set(t, True)
        elif entry.kind == "heartbeat_restored":
            own.jeopardy.set(t, False)
    return states


@dataclass
class LabWorld:
    """What the checker and `to_json` read from a `World`, from the lab's records."""

    runs: list[Run]
    entries: list[JournalEntry]
    alerts: list[Alert]
    faults: list[AppliedFault]
    starts: dict[str, int]
    states: dict[str, HostStates]

    def host_state(self, name: str, t: float) -> str:
        return self.states[name].state(t)

    def host_state_since(self, name: str, t: float) -> float:
        state = self.host_state(name, t)
        since = 0.0
        for c in reversed([c for c in self.states[name].change_times() if c <= t]):
            if self.host_state(name, c) != state:
                break
            since = c
        return since


def alerts_of(entries: list[JournalEntry]) -> list[Alert]:
    found = []
    for entry in entries:
        if entry.kind != "alert_sent":
            continue
        text = entry.text
        severity = "warning"
        if text.startswith("[") and "] " in text:
            severity, text = text[1:].split("] ", 1)
        found.append(Alert(entry.t, severity, text))
    return found


# ---------------------------------------------------------------------- tolerance
def _instants(world: LabWorld, e: Expectation, at: float, tolerance: float,
              duration: float) -> list[float]:
    low, high = max(0.0, at - tolerance), min(duration, at + tolerance)
    points = {at, low, high}
    if e.kind == "running_on":
        for run in world.runs:
            if run.vm == e.vm:
                assert run.end is not None
                points.update(t for t in (run.start, run.end - 1e-6) if low <= t <= high)
    elif e.host is not None and e.host in world.states:
        points.update(t + 1e-6 for t in world.states[e.host].change_times()
                      if low <= t + 1e-6 <= high)
    return sorted(points, key=lambda t: (abs(t - at), t))


def judge(world: LabWorld, e: Expectation, duration: float, tolerance: float) -> Outcome:
    """`checker.evaluate` with the lab's tolerance (see the module docstring)."""
    kind = e.kind
    if kind in ("running_on", "host_state") and tolerance > 0:
        assert e.at is not None
        first = evaluate(_as_world(world), e, duration)
        if first.passed:
            return first
        for t in _instants(world, e, e.at, tolerance, duration):
            moved = evaluate(_as_world(world), e.model_copy(update={"at": t}), duration)
            if moved.passed:
                return Outcome(e, True, f"{moved.detail} (at {t:.1f}s, within "
                                        f"{tolerance:g}s of {e.at:g}s)")
        return first
    changes: dict[str, Any] = {}
    if tolerance > 0:
        if kind == "event":
            if e.from_ is not None:
                changes["from_"] = max(0.0, e.from_ - tolerance)
            if e.to is not None:
                changes["to"] = min(duration, e.to + tolerance)
        elif kind in ("no_event", "not_running_on"):
            start = e.from_ if e.from_ is not None else None
            end = e.to if e.to is not None else None
            if start is not None:
                changes["from_"] = start + tolerance
            if end is not None:
                changes["to"] = end - tolerance
            if start is not None and end is not None and start + tolerance > end - tolerance:
                changes["from_"] = changes["to"] = (start + end) / 2
        elif kind == "alert" and e.by is not None:
            changes["by"] = min(duration, e.by + tolerance)
    outcome = evaluate(_as_world(world), e.model_copy(update=changes) if changes else e,
                       duration)
    return Outcome(e, outcome.passed, outcome.detail)


def _as_world(world: LabWorld) -> World:
    # The checker reads only the attributes LabWorld provides (see the module docstring).
    return cast("World", world)


# ---------------------------------------------------------------------- the result
@dataclass
class LabResult:
    result: SimulationResult
    tolerance: float
    lab: dict[str, Any]

    @property
    def passed(self) -> bool:
        """The checker's verdict, and no error of the lab itself during the run."""
        return self.result.passed and not self.lab.get("errors")


def judge_run(scenario: Scenario, world: LabWorld, tolerance: float, lab: dict[str, Any]
              ) -> LabResult:
    duration = scenario.duration
    violations = split_brains(world.runs)
    outcomes = [judge(world, e, duration, tolerance) for e in scenario.expect]
    result = SimulationResult(scenario, scenario.seed, _as_world(world), violations, outcomes)
    return LabResult(result, tolerance, lab)


def lab_json(result: LabResult) -> dict[str, Any]:
    """`ringfence simulate --json`'s document, plus each verdict's tolerance and ``lab``."""
    document = to_json(result.result)
    for verdict, outcome in zip(document["expectations"], result.result.outcomes, strict=True):
        kind = outcome.expectation.kind
        verdict["tolerance_s"] = None if kind == "max_downtime" else result.tolerance
    document["passed"] = result.passed
    document["lab"] = result.lab
    return document
