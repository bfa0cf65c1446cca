"""Failsafe when the store comes back for one host before the other (`core.failsafe`): the
host that is still cut off keeps its VMs exactly as long as a peer's lease report proves its
lease alive in the store, and not a moment longer. The two library scenarios pass with the
real agent; a deadline that trusts a report for longer, or a flag sent before the reports,
is caught."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SCENARIOS
from ringfence.core import agent as agent_module
from ringfence.core.failsafe import LeaseReporter
from ringfence.sim.runner import SimulationResult, simulate
from ringfence.sim.scenario import load_scenario, parse_scenario

STAGGERED = SCENARIOS / "failsafe-staggered-store-return.yaml"
ONE_HOST_ONLY = SCENARIOS / "failsafe-store-back-for-one-host-only.yaml"
JUST_BEFORE = SCENARIOS / "failsafe-store-back-just-before-a-lease-goes-stale.yaml"


def _simulate(path: Path) -> SimulationResult:
    return simulate(load_scenario(path))


def _kinds(result: SimulationResult, host: str) -> list[str]:
    return [e.kind for e in result.world.entries if e.host == host]


def test_a_staggered_return_keeps_every_vm() -> None:
    result = _simulate(STAGGERED)
    assert result.passed, [o.detail for o in result.outcomes if not o.passed]
    kinds = _kinds(result, "nodeB")
    assert "failsafe_vouched" in kinds and "self_fence" not in kinds


def test_a_host_the_store_never_comes_back_for_stops_within_the_vouched_time() -> None:
    result = _simulate(ONE_HOST_ONLY)
    assert not result.violations, [v.text() for v in result.violations]
    assert result.passed, [o.detail for o in result.outcomes if not o.passed]


def test_a_report_trusted_for_good_runs_one_vm_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # The deadline is what makes the grace safe: a host that keeps vouching for itself once
    # a peer said "alive" keeps web running while nodeA, having waited out the lease and the
    # watchdog, restarts it.
    real = agent_module.vouched_until

    def forever(*args: object, **kwargs: object) -> tuple[float, str | None]:
        until, peer = real(*args, **kwargs)  # type: ignore[arg-type]
        return (float("inf"), peer) if peer is not None else (until, peer)

    monkeypatch.setattr(agent_module, "vouched_until", forever)
    result = _simulate(ONE_HOST_ONLY)
    assert any(v.vm == "web" and v.kind == "split_brain" for v in result.violations), \
        [v.text() for v in result.violations]


def test_the_flag_sent_before_the_reports_makes_the_late_host_self_fence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Why the reporter holds "reaches the store" back until its first reports: without that,
    # nodeB hears the flag first and has nothing to keep its VM on.
    monkeypatch.setattr(LeaseReporter, "owed", lambda self, fingerprint: False)
    result = _simulate(STAGGERED)
    assert "self_fence" in _kinds(result, "nodeB")


def test_a_return_just_before_a_peer_goes_stale_reports_that_peer_first() -> None:
    # Found in the lab (issue 17): the store came back for nodeA while nodeB, cut off from it,
    # was not yet in failsafe; nodeA owed nodeB no report, and nodeB self-fenced when its
    # lease went stale 0.6 s later, 0.4 s before the store came back for it.
    result = _simulate(JUST_BEFORE)
    assert not result.violations, [v.text() for v in result.violations]
    assert result.passed, [o.detail for o in result.outcomes if not o.passed]
    assert "failsafe_vouched" in _kinds(result, "nodeB")


def test_a_report_that_failed_before_the_return_does_not_count_for_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # nodeA's decision cycle tried nodeB's report at 22.4 s, while the store still elected;
    # that failed attempt must not count once nodeA's renewal gets through at 22.6 s, or
    # nodeA says "reaches the store" with nothing for nodeB.
    monkeypatch.setattr(LeaseReporter, "returned", lambda self: None)
    assert "self_fence" in _kinds(_simulate(JUST_BEFORE), "nodeB")


def test_a_host_cut_off_alone_gets_no_report_and_stops_as_before() -> None:
    # Only a return owes the peers without fresh news a report: without one (nodeA never lost
    # the store), nodeB, cut off from it alone, self-fences when its lease goes stale.
    data = yaml.safe_load(JUST_BEFORE.read_text())
    data["events"] = [{"at": "21s", "do": "partition", "networks": ["san"],
                       "groups": [["nodeB"], ["nodeA", "cp1", "cp2", "cp3"]]}]
    data["expect"] = []
    result = simulate(parse_scenario(data))
    assert not result.violations, [v.text() for v in result.violations]
    kinds = _kinds(result, "nodeB")
    assert "self_fence" in kinds and "failsafe_entered" not in kinds


def _variant(rng: random.Random) -> dict[str, Any]:
    """The staggered return drawn at random: who is cut off from the store and for how long
    (or for good), lossy and jittery heartbeats, drifting clocks, slow store calls, a slow
    election, and the coordination points back at different instants."""
    data = yaml.safe_load(STAGGERED.read_text())
    late = rng.choice([["nodeB"], ["nodeA"], ["nodeA", "nodeB"]])
    back = 150.0 + rng.uniform(0.0, 1.0)
    events: list[dict[str, Any]] = [
        {"at": "30s", "do": "witness_down", "witness": "cp1"},
        {"at": "30s", "do": "witness_down", "witness": "cp2"},
        {"at": f"{back:.2f}s", "do": "partition", "networks": ["san"],
         "groups": [late, sorted({"nodeA", "nodeB", "cp1", "cp2", "cp3"} - set(late))]},
        {"at": f"{back:.2f}s", "do": "witness_up", "witness": "cp1"},
        {"at": f"{back + rng.uniform(0.0, 2.0):.2f}s", "do": "witness_up", "witness": "cp2"},
    ]
    if rng.random() < 0.8:
        events.append({"at": f"{back + rng.uniform(0.2, 12.0):.2f}s", "do": "heal",
                       "networks": ["san"]})
    data["events"] = sorted(events, key=lambda e: float(e["at"][:-1]))
    data["expect"] = []
    data["duration"] = "200s"
    data["seed"] = rng.randint(0, 2**31 - 1)
    data["sim"] = {
        "packet_loss": rng.choice([0.0, 0.1, 0.3]),
        "link_jitter": f"{rng.choice([0.0, 0.1, 0.3])}s",
        "clock_drift_ppm": rng.choice([0.0, -500.0, 500.0]),
        "store_election_time": f"{rng.choice([0.2, 1.0, 3.0])}s",
        "latency": {"store": {"min": "0s", "max": f"{rng.choice([0.005, 0.3, 1.3])}s"}},
    }
    return data


def test_staggered_returns_drawn_at_random_never_run_a_vm_twice() -> None:
    rng = random.Random(1102)
    for run in range(40):
        data = _variant(rng)
        result = simulate(parse_scenario(data))
        assert not result.violations, (run, data["events"], data["sim"],
                                       [v.text() for v in result.violations])
