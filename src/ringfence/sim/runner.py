"""Run a scenario: build the world, run it to its end, check safety and expectations, and
shape the result as the contract's JSON. Pure function of (scenario, seed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ringfence.core.events import fact_fields
from ringfence.sim.checker import Outcome, Violation, downtime, evaluate, split_brains
from ringfence.sim.obligations import overdue_vms
from ringfence.sim.scenario import Scenario
from ringfence.sim.world import World


@dataclass
class SimulationResult:
    scenario: Scenario
    seed: int
    world: World
    violations: list[Violation]
    outcomes: list[Outcome]

    @property
    def passed(self) -> bool:
        return not self.violations and all(o.passed for o in self.outcomes)


def simulate(scenario: Scenario, seed: int | None = None) -> SimulationResult:
    seed = scenario.seed if seed is None else seed
    world = World(scenario, seed)
    world.run(scenario.duration)
    violations = [*split_brains(world.runs), *world.obligation_violations,
                  *overdue_vms(world, scenario.duration)]
    outcomes = [evaluate(world, e, scenario.duration) for e in scenario.expect]
    return SimulationResult(scenario, seed, world, violations, outcomes)


def _t(value: float) -> float:
    return round(value, 3)


def _violation(v: Violation) -> dict[str, Any]:
    """A split brain in the contract's shape; `stale_pet` and `overdue_vm` alike, with the
    host in `hosts` (and `vm: null` for a pet)."""
    out: dict[str, Any] = {"kind": v.kind, "vm": v.vm, "hosts": list(v.hosts),
                           "from": _t(v.start), "to": _t(v.end), "text": v.text()}
    if v.age is not None:
        out["age"] = _t(v.age)
    return out


def to_json(result: SimulationResult) -> dict[str, Any]:
    """The `--json` document of the scenario contract (plus `faults` and `alerts`)."""
    world, scenario = result.world, result.scenario
    duration = scenario.duration
    runs = sorted(world.runs, key=lambda r: (r.vm, r.start, r.host))
    vms: dict[str, Any] = {}
    for vm in scenario.cluster.vms:
        mine = [r for r in runs if r.vm == vm.name]
        final = [r for r in mine if r.end == duration and r.start < duration]
        vms[vm.name] = {
            "downtime_s": _t(downtime(world, vm.name, duration)),
            "final_host": final[-1].host if final else None,
            "starts": world.starts.get(vm.name, 0),
        }
    return {
        "scenario": scenario.name,
        "seed": result.seed,
        "passed": result.passed,
        "violations": [_violation(v) for v in result.violations],
        "expectations": [
            {"expect": o.expectation.as_written(), "passed": o.passed, "detail": o.detail}
            for o in result.outcomes
        ],
        "runs": [
            {"vm": r.vm, "host": r.host, "from": _t(r.start), "to": _t(r.end or duration)}
            for r in runs
        ],
        "vms": vms,
        "hosts": {
            h.name: {"final_state": world.host_state(h.name, duration)}
            for h in scenario.cluster.hosts
        },
        "events": [
            {"t": _t(e.t), "kind": e.kind, "host": e.host, "vm": e.vm, "text": e.text,
             "by": e.by, **{k: v for k, v in fact_fields(e.fact).items()
                            if k not in ("host", "vm")}}
            for e in world.entries
        ],
        "faults": [{"t": _t(f.t), "kind": f.kind, **f.detail} for f in world.faults],
        "alerts": [{"t": _t(a.t), "severity": a.severity, "text": a.text}
                   for a in world.alerts],
    }
