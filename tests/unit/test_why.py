"""`ringfence why`: every move of every VM in the scenario library is explained by the journal
alone: something detected why it had to move, something proved the old copy could not run (a
fence, the lease, the old holder's stop, or the live hand-over), and a placement reason."""

from __future__ import annotations

import functools
import itertools
import json

import pytest

from conftest import SCENARIOS
from ringfence.cli import main
from ringfence.journal.events import Event, from_world
from ringfence.journal.why import VmHistory, explain_vm
from ringfence.sim.runner import SimulationResult, simulate
from ringfence.sim.scenario import load_scenario

LIBRARY = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


@functools.cache
def run(name: str) -> tuple[SimulationResult, tuple[Event, ...]]:
    result = simulate(load_scenario(SCENARIOS / f"{name}.yaml"))
    return result, tuple(from_world(result.world))


def truth_moves(result: SimulationResult, vm: str) -> int:
    """Arrivals on another host than the previous run's, by ground truth."""
    runs = sorted((r for r in result.world.runs if r.vm == vm), key=lambda r: r.start)
    return sum(1 for a, b in itertools.pairwise(runs) if a.host != b.host)


@pytest.mark.parametrize("name", LIBRARY)
def test_every_move_in_the_library_has_its_chain_of_evidence(name: str) -> None:
    result, events = run(name)
    for spec in result.scenario.cluster.vms:
        history: VmHistory = explain_vm(events, spec.name)
        assert len(history.moves) == truth_moves(result, spec.name), (
            f"{name} {spec.name}: {len(history.moves)} moves in the journal, "
            f"{truth_moves(result, spec.name)} by ground truth")
        for move in history.moves:
            where = f"{name} {spec.name} {move.source}->{move.target} at {move.at:.1f}"
            assert move.detection, f"{where}: no detection"
            assert move.proof, f"{where}: no fence or lease proof"
            assert move.placement, f"{where}: no placement reason"


def test_a_restart_names_the_observers_the_fence_and_each_host_considered() -> None:
    _, events = run("002-node-hangs")
    (move,) = explain_vm(events, "db").moves
    assert (move.kind, move.source, move.target) == ("restart", "nodeA", "nodeB")
    lost = next(e for e in move.detection if e.kind == "heartbeat_lost")
    assert lost.by == "nodeB" and lost.fact.links == ("priv1", "priv2")
    assert any(e.kind == "host_fenced" and e.fact.method == "watchdog" for e in move.proof)
    assert move.placement == ("nodeA: may not receive VMs (fenced)", "nodeB: chosen")
    assert move.verification is not None and move.verification.kind == "vm_verified"


def test_why_command_text_json_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(SCENARIOS / "002-node-hangs.yaml")
    assert main(["why", "db", "--scenario", path]) == 0
    text = capsys.readouterr().out
    assert "1. nodeA → nodeB: restarted elsewhere" in text and "nodeB: chosen" in text
    assert main(["why", "db", "--scenario", path, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["vm"] == "db" and document["moves"][0]["target"] == "nodeB"
    assert document["moves"][0]["proof"][0]["kind"] in ("watchdog_reset", "lease_expired",
                                                         "host_fenced")
    assert main(["why", "nosuch", "--scenario", path]) == 2
    assert "no event about VM 'nosuch'" in capsys.readouterr().err
