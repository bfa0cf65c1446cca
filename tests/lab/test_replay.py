"""One scenario of every seed, replayed for real with `ringfence lab run`: the same file
that passes in the simulator must pass on real processes, sockets, etcd and carrier loss.

Each takes its scenario's duration in real time (90-200 s). The machine is shared: when the
lab reports that the machine itself stood still during a run (``lab.stalls``, a fault applied
late), that run says nothing about ringfence, and it is replayed once more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ringfence.lab.judge import lab_json
from ringfence.lab.runner import LabOptions, LabRun
from ringfence.sim.scenario import load_scenario

pytestmark = pytest.mark.lab
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"



ONE_PER_SEED = [
    "000-customer-network-carrier-loss.yaml",  # carrier lost on a NIC
    "001-reboot-renamed-nics-monitoring.yaml",  # NICs renamed across a power cycle
    "002-node-hangs.yaml",  # a host hung: the watchdog resets it
    "003-host-power-loss-3-hosts.yaml",  # a power cut, the watchdog rule
    "004-cold-start-active-first.yaml",  # a cold start: the active node boots first
]


def replay(name: str) -> dict[str, Any]:
    scenario = load_scenario(SCENARIOS / name)
    for _attempt in range(2):
        document = lab_json(LabRun(scenario, LabOptions(tolerance=1.0)).run())
        unreliable = document["lab"]["errors"] or any(s["s"] > 2.0
                                                      for s in document["lab"]["stalls"])
        if document["passed"] or not unreliable:
            return document
    return document


def failures(document: dict[str, Any]) -> str:
    lines = [f"{item['expect']}: {item['detail']}" for item in document["expectations"]
             if not item["passed"]]
    lines += [violation["text"] for violation in document["violations"]]
    lines += [f"lab: {error}" for error in document["lab"]["errors"]]
    lines += [f"lab: the machine stood still {s['s']}s at {s['t']}s"
              for s in document["lab"]["stalls"]]
    return "\n".join(lines)


@pytest.mark.parametrize("name", ONE_PER_SEED)
def test_seed_scenario_passes_for_real(name: str, no_new_namespaces: None) -> None:
    document = replay(name)
    assert document["passed"], failures(document)
    assert not document["violations"]
    assert document["runs"], "the VMs never wrote to their disk"


def test_failsafe_survives_a_staggered_store_return_for_real(no_new_namespaces: None) -> None:
    # Issue 11: found in the lab (002 row 7, the store back for one host a moment before the
    # other); here nodeB's storage network really stays cut 4 s after the coordination
    # points return (etcd takes 2-3 s to elect a leader again, and nodeA must reach the store
    # before nodeB does). nodeA vouches for nodeB's lease, and nobody stops a VM.
    document = replay("failsafe-staggered-store-return.yaml")
    assert document["passed"], failures(document)
    returns = [f"{e['t']:.2f}s {e['kind']} {e['host']}" for e in document["events"]
               if e["kind"] in ("quorum_gained", "failsafe_left", "failsafe_vouched")]
    assert any(e["kind"] == "failsafe_vouched" and e["host"] == "nodeB"
               for e in document["events"]), returns


def test_a_store_back_just_before_a_lease_goes_stale_stops_nothing_for_real(
        no_new_namespaces: None) -> None:
    # Issue 17, found in the lab on 7 December: the store came back for one host a moment
    # before the other's lease went stale, while the other was cut off from it still. With the
    # code of that day nodeB self-fenced here at 23.2 s and web was down 10.6 s; now nodeA
    # reports nodeB's lease at its return, and nodeB keeps web until it reaches the store.
    document = replay("failsafe-store-back-just-before-a-lease-goes-stale.yaml")
    assert document["passed"], failures(document)
    assert not any(e["kind"] == "self_fence" for e in document["events"])


def test_two_operators_forcing_one_vm_without_quorum_for_real(no_new_namespaces: None) -> None:
    # Issue 11, cause C (docs/lab.md): for real, alice's forced start came 3.7 s after her
    # request (the decision cycle was held by registration attempts on a store without
    # quorum). node0, which held the lease last, fences node1 at once and starts app within
    # the scenario's 2 s (the lab's tolerance: 1 s more); bob's copy never runs.
    document = replay("004-two-operators-force-start.yaml")
    assert document["passed"], failures(document)
    assert not document["violations"]
    hosts = {run["host"] for run in document["runs"] if run["vm"] == "app"}
    assert hosts == {"node0"}, document["runs"]


def test_a_drained_vm_survives_the_power_cut_of_the_host_it_left(no_new_namespaces: None
                                                                  ) -> None:
    # Issue 11: a live-migrated process VM used to start in the source host's namespace, so
    # cutting the source's power (here 25 s after the drain) killed it. Now the copy runs in
    # the target's namespace: no downtime, no recovery, and host1's VMs never come back there.
    document = replay("drain-then-power-cut.yaml")
    assert document["passed"], failures(document)
    assert not document["violations"]
    moved = {run["host"] for run in document["runs"] if run["vm"] in ("web", "db")}
    assert "host1" in moved and moved - {"host1"}, document["runs"]


def test_a_migration_into_a_host_that_fences_itself_fails_at_once_for_real(
        no_new_namespaces: None) -> None:
    # Issue 11, cause F (docs/lab.md): the process hypervisor's incoming copy was listed
    # nowhere, so h3's self-fence left it alone and the migration failed only when its 64 s
    # copy ended (95 s). Now h3 lists the copy, as libvirt lists a migration's paused
    # domain, its self-fence destroys it, and the migration fails there and then.
    document = replay("migration-into-a-host-that-fences-itself.yaml")
    assert document["passed"], failures(document)
    assert not document["violations"]
    assert {run["host"] for run in document["runs"] if run["vm"] == "erp"} == {"h2"}
