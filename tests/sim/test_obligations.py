"""The checker's two timing obligations (`sim.obligations`) bite: an agent that pets on a
stale lease, or keeps its VMs past its own deadline, is caught; the real agent is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SCENARIOS
from ringfence.core.agent import Agent
from ringfence.core.vms import VmKeeper
from ringfence.sim.runner import SimulationResult, simulate
from ringfence.sim.scenario import load_scenario
from ringfence.sim.world import World

STALE_PET = SCENARIOS / "slow-store-calls-stale-pet.yaml"


def _simulate(path: Path) -> SimulationResult:
    return simulate(load_scenario(path))


def test_the_real_agent_owes_nothing_with_slow_store_calls() -> None:
    result = _simulate(STALE_PET)
    assert not result.violations, [v.text() for v in result.violations]


def test_a_pet_from_memory_of_the_lease_is_a_stale_pet(monkeypatch: pytest.MonkeyPatch) -> None:
    # The defect the issue describes: the pet trusts a freshness check made before slow
    # store calls. Here the agent trusts its lease for good.
    monkeypatch.setattr(Agent, "_lease_fresh", lambda self, now: True)
    result = _simulate(STALE_PET)
    stale = [v for v in result.violations if v.kind == "stale_pet"]
    assert stale, [v.text() for v in result.violations]
    assert stale[0].hosts == ("host1",)
    assert stale[0].age is not None and stale[0].age > 5.0


def test_a_self_fence_that_leaves_vms_running_is_overdue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A self-fence that "forgets" to pull the plug: the VM runs on past host1's own deadline
    # until the watchdog resets the host.
    monkeypatch.setattr(VmKeeper, "destroy_all", lambda self: sorted(self.owned))
    monkeypatch.setattr(VmKeeper, "destroy_leftovers", lambda self: None)
    result = _simulate(STALE_PET)
    overdue = [v for v in result.violations if v.kind == "overdue_vm"]
    assert overdue, [v.text() for v in result.violations]
    assert overdue[0].vm == "app" and overdue[0].hosts == ("host1",)


def test_arming_with_guests_running_is_judged_as_a_pet() -> None:
    # Arming vouches for no lease when nothing runs (scenario rejoin-cut-off-mid-
    # registration); with guests running it is judged like any pet.

    world = World(load_scenario(STALE_PET), 1)
    world.run(20.0)
    host = world.hosts["host1"]
    assert host.domains, "app runs on host1 by 20 s"
    world.lives["host1"][-1][0][:] = [1.0]  # its last real renewal: 19 s ago
    world.watchdog_arm("host1", 4.0)
    assert [v.kind for v in world.obligation_violations] == ["stale_pet"]
    host.domains.clear()
    world.watchdog_arm("host1", 4.0)
    assert len(world.obligation_violations) == 1
