"""The checker: the always-on split-brain check over ground truth, and the expectations.

It reads only what the simulated world recorded (hypervisor domains as `runs`, power, the
journal, the agents' and the leader's published states); it never asks the decision code what
it believes. A VM "runs" on a host while the host's hypervisor executes it; a hung host's
guests do not execute, but the instant the host resumes they do, so a resumed host that still
holds a VM whose lease moved is a violation even if its agent destroys the VM at once.

A live migration hands one guest over: the source's run ends at the switchover instant and the
target's run begins at that same instant (`Run.handed_to` links them). That shared instant is
not an overlap, even when the source's run is zero-length (a host that resumed from a hang
and migrated its guest in the same instant). Anything else is: a source that kept running
after the switchover, or a copy on a third host at that instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

from ringfence.sim.scenario import Expectation
from ringfence.units import format_duration

if TYPE_CHECKING:
    from ringfence.sim.world import Run, World


@dataclass(frozen=True)
class Violation:
    """A safety violation. `split_brain`: `vm` ran on both `hosts` over [start, end].
    `stale_pet`: `hosts[0]` petted its watchdog at `start` while its lease was stale (`age`).
    `overdue_vm`: `vm` still ran on `hosts[0]` over [start, end], past its own self-fence
    deadline (see `sim.obligations`)."""

    vm: str | None
    hosts: tuple[str, ...]
    start: float
    end: float
    kind: str = "split_brain"
    age: float | None = None

    def text(self) -> str:
        span = (f"at {self.start:.3f}s" if self.start == self.end
                else f"from {self.start:.3f}s to {self.end:.3f}s")
        if self.kind == "stale_pet":
            return (f"stale pet: {self.hosts[0]} petted its watchdog at {self.start:.3f}s with "
                    f"its lease last renewed {self.age or 0.0:.2f}s before")
        if self.kind == "overdue_vm":
            return (f"overdue VM: {self.vm} ran on {self.hosts[0]} {span}, past {self.hosts[0]}"
                    f"'s own self-fence deadline")
        return f"split brain: {self.vm} ran on {self.hosts[0]} and {self.hosts[1]} {span}"


@dataclass(frozen=True)
class Outcome:
    expectation: Expectation
    passed: bool
    detail: str


def _end(run: Run) -> float:
    assert run.end is not None
    return run.end


def _handover(a: Run, b: Run) -> bool:
    """Is one run the other's live migration, meeting it at the switchover instant?"""
    return (a.handed_to is b and _end(a) == b.start) or (b.handed_to is a and _end(b) == a.start)


def _overlap(a: Run, b: Run) -> tuple[float, float] | None:
    """The instants both runs share. A zero-length run is the single instant it happened;
    the switchover instant of a live migration belongs to one guest, not two."""
    if _handover(a, b):
        return None
    a_end, b_end = _end(a), _end(b)
    start = max(a.start, b.start)
    if a.start == a_end or b.start == b_end:
        point_run, other = (a, b) if a.start == a_end else (b, a)
        other_end = _end(other)
        t = point_run.start
        if other.start <= t < other_end or (other.start == other_end == t):
            return (t, t)
        return None
    end = min(a_end, b_end)
    return (start, end) if start < end else None


def split_brains(runs: list[Run]) -> list[Violation]:
    by_vm: dict[str, list[Run]] = {}
    for run in runs:
        by_vm.setdefault(run.vm, []).append(run)
    found: list[Violation] = []
    for vm in sorted(by_vm):
        for a, b in combinations(sorted(by_vm[vm], key=lambda r: (r.start, r.host)), 2):
            if a.host == b.host:
                continue
            shared = _overlap(a, b)
            if shared is not None:
                found.append(Violation(vm, (a.host, b.host), *shared))
    return found


def _runs_of(world: World, vm: str) -> list[Run]:
    return [r for r in world.runs if r.vm == vm]


def running_at(run: Run, t: float, duration: float) -> bool:
    end = _end(run)
    return run.start <= t < end or (run.start == end == t) or (t == end == duration)


def downtime(world: World, vm: str, duration: float) -> float:
    """Time the VM was down on every host after it first started, up to the end of the run."""
    spans = sorted((r.start, _end(r)) for r in _runs_of(world, vm))
    if not spans:
        return 0.0
    covered, cursor = 0.0, spans[0][0]
    for start, end in spans:
        if end > cursor:
            covered += end - max(start, cursor)
            cursor = end
    return max(0.0, (duration - spans[0][0]) - covered)  # no -0.0 from rounding


def evaluate(world: World, expectation: Expectation, duration: float) -> Outcome:
    kind = expectation.kind
    check = {
        "running_on": _running_on,
        "not_running_on": _not_running_on,
        "max_downtime": _max_downtime,
        "host_state": _host_state,
        "event": _event,
        "no_event": _no_event,
        "alert": _alert,
    }[kind]
    passed, detail = check(world, expectation, duration)
    return Outcome(expectation, passed, detail)


def _fmt(t: float) -> str:
    return f"{t:.1f}s"


def _running_on(world: World, e: Expectation, duration: float) -> tuple[bool, str]:
    assert e.vm is not None and e.running_on is not None and e.at is not None
    now = [r for r in _runs_of(world, e.vm) if running_at(r, e.at, duration)]
    hosts = sorted({r.host for r in now})
    if not now:
        before = [r for r in _runs_of(world, e.vm) if r.start <= e.at]
        last = max(before, key=lambda r: _end(r), default=None)
        where = (f"; last ran on {last.host} until {_fmt(_end(last))}" if last else
                 "; it never ran before then")
        return False, f"{e.vm} is not running at {_fmt(e.at)}{where}"
    if e.running_on == "any" or e.running_on in hosts:
        run = next(r for r in now if e.running_on in ("any", r.host))
        return True, f"running on {run.host} since {_fmt(run.start)}"
    return False, f"{e.vm} runs on {', '.join(hosts)} at {_fmt(e.at)}, not on {e.running_on}"


def _not_running_on(world: World, e: Expectation, duration: float) -> tuple[bool, str]:
    assert e.vm is not None and e.not_running_on is not None
    start = e.from_ if e.from_ is not None else 0.0
    end = e.to if e.to is not None else duration
    for run in _runs_of(world, e.vm):
        if e.not_running_on not in ("any", run.host):
            continue
        run_end = _end(run)
        hit = (start <= run.start <= end) if run.start == run_end else (
            run.start <= end and run_end > start)
        if hit:
            return False, (f"{e.vm} ran on {run.host} from {_fmt(run.start)} to "
                           f"{_fmt(run_end)}, inside {_fmt(start)}–{_fmt(end)}")
    where = "anywhere" if e.not_running_on == "any" else f"on {e.not_running_on}"
    return True, f"{e.vm} did not run {where} between {_fmt(start)} and {_fmt(end)}"


def _max_downtime(world: World, e: Expectation, duration: float) -> tuple[bool, str]:
    assert e.vm is not None and e.max_downtime is not None
    if not _runs_of(world, e.vm):
        # Downtime counts from the first start (the contract); a VM that never started has
        # none, and a bound on it must not pass as if the VM had been up all along.
        return False, f"{e.vm} never ran: no downtime to bound"
    down = downtime(world, e.vm, duration)
    ok = down <= e.max_downtime + 1e-9
    return ok, f"{e.vm} was down {down:.1f}s in all (bound {format_duration(e.max_downtime)})"


def _host_state(world: World, e: Expectation, duration: float) -> tuple[bool, str]:
    assert e.host is not None and e.state is not None and e.at is not None
    state = world.host_state(e.host, e.at)
    since = world.host_state_since(e.host, e.at)
    if state == e.state:
        return True, f"{e.host} is {state} since {_fmt(since)}"
    return False, f"{e.host} is {state} at {_fmt(e.at)} (since {_fmt(since)}), not {e.state}"


def _matching_events(world: World, kind: str, e: Expectation, duration: float) -> list[str]:
    start = e.from_ if e.from_ is not None else 0.0
    end = e.to if e.to is not None else duration
    return [
        f"{entry.kind} at {_fmt(entry.t)}: {entry.text}"
        for entry in world.entries
        if entry.kind == kind and start <= entry.t <= end
        and (e.host is None or entry.host == e.host)
        and (e.vm is None or entry.vm == e.vm)
    ]


def _event(world: World, e: Expectation, duration: float) -> tuple[bool, str]:
    assert e.event is not None
    found = _matching_events(world, e.event, e, duration)
    if found:
        return True, found[0]
    return False, f"no {e.event} event{_scope(e)}"


def _no_event(world: World, e: Expectation, duration: float) -> tuple[bool, str]:
    assert e.no_event is not None
    found = _matching_events(world, e.no_event, e, duration)
    if found:
        return False, f"unexpected {found[0]}"
    return True, f"no {e.no_event} event{_scope(e)}"


def _scope(e: Expectation) -> str:
    parts = []
    if e.host:
        parts.append(f"about {e.host}")
    if e.vm:
        parts.append(f"about {e.vm}")
    if e.from_ is not None or e.to is not None:
        parts.append(f"between {_fmt(e.from_ or 0.0)} and "
                     f"{_fmt(e.to) if e.to is not None else 'the end'}")
    return (" " + " ".join(parts)) if parts else ""


def _alert(world: World, e: Expectation, duration: float) -> tuple[bool, str]:
    assert e.alert is not None
    deadline = e.by if e.by is not None else duration
    words = e.alert.lower()
    sent = [a for a in world.alerts if a.t <= deadline and words in a.text.lower()]
    if not sent:
        return False, f"no alert containing {e.alert!r} by {_fmt(deadline)}"
    if e.route is None and e.delivered is None:
        return True, f"alert at {_fmt(sent[0].t)}: {sent[0].text}"
    route = f" by route {e.route}" if e.route else ""
    tries = [d for d in world.alert_deliveries if words in d.text.lower()
             and (e.route is None or d.route == e.route)]
    done = [d for d in tries if d.delivered and d.t <= deadline]
    if e.delivered is False:
        if done:
            return False, (f"alert delivered{route} at {_fmt(done[0].t)}: {done[0].text}")
        why = "; ".join(sorted({f"{d.route}: {d.reason}" for d in tries if not d.delivered}))
        return True, (f"alert at {_fmt(sent[0].t)} not delivered{route} by "
                      f"{_fmt(deadline)}" + (f" ({why})" if why else ""))
    if done:
        return True, f"alert delivered{route} at {_fmt(done[0].t)}: {done[0].text}"
    why = "; ".join(sorted({f"{d.route}: {d.reason}" for d in tries if not d.delivered}))
    return False, (f"alert at {_fmt(sent[0].t)} not delivered{route} by {_fmt(deadline)}"
                   + (f" ({why})" if why else " (no route took it)"))
