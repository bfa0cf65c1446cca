"""Real clusters on this machine: agents as processes, UDP heartbeats on loopback, a shared
store, VMs as processes writing to a shared disk file. The ground truth for split brain is the
disk file (who wrote for which VM, when), not what any agent believes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import new_demo, wait_for
from ringfence.demo import Demo, split_brains
from ringfence.etcd_local import ETCD, running_cluster
from ringfence.hypervisor.process import ProcessGuestChecks


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Demo]:
    options: dict[str, object] = getattr(request, "param", {})
    demo = new_demo(3, 4, tmp_path, **options)
    demo.write_cluster()
    for host in demo.hosts:
        demo.start_host(host)
    try:
        wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
        yield demo
    finally:
        demo.stop()


def moved_off(demo: Demo, victim: str) -> bool:
    placed = demo.placement_now(window=0.5)
    return len(placed) == len(demo.vms) and victim not in placed.values()


def test_power_off_of_a_host_moves_its_vms_and_they_answer(cluster: Demo) -> None:
    cluster.inject("power_off")
    victim = cluster.faults[0].host
    assert victim is not None
    wait_for(lambda: moved_off(cluster, victim), 30, f"the VMs of {victim} to run elsewhere")
    for vm, host in sorted(cluster.placement_now().items()):
        checks = ProcessGuestChecks(cluster.state / "vms" / host, host=host)
        assert checks.check(vm), f"{vm} does not answer on {host}"
    assert split_brains(cluster.writes()) == []


@pytest.mark.parametrize("cluster", [{"fencing": False}], indirect=True)
def test_a_frozen_agent_is_reset_by_its_watchdog_before_its_vms_move(cluster: Demo) -> None:
    # SIGSTOP the agent only: its VMs keep running (and writing). Only its process watchdog
    # can stop them; the other hosts must not start them before it did.
    cluster.inject("agent_hang")
    victim = cluster.faults[0].host
    assert victim is not None
    wait_for(lambda: moved_off(cluster, victim), 40, f"the VMs of {victim} to run elsewhere")
    records = cluster.writes()
    assert split_brains(records) == []
    last_on_victim = max(r["t"] for r in records if r["host"] == victim)
    moved = {r["vm"] for r in records if r["host"] == victim}
    first_elsewhere = min(r["t"] for r in records
                          if r["vm"] in moved and r["host"] != victim
                          and r["t"] > cluster.faults[0].wall)
    assert last_on_victim < first_elsewhere


@pytest.fixture
def etcd_endpoints(tmp_path: Path) -> Iterator[list[str]]:
    if ETCD is None:
        pytest.skip("the etcd binary is missing: install Debian's etcd-server")
    (tmp_path / "etcd").mkdir()
    with running_cluster(tmp_path / "etcd", 1) as members:
        yield members.endpoints


def test_the_same_with_etcd(tmp_path: Path, etcd_endpoints: list[str]) -> None:
    demo = new_demo(3, 3, tmp_path, fencing=False, etcd_endpoints=etcd_endpoints)
    demo.write_cluster()
    for host in demo.hosts:
        demo.start_host(host)
    try:
        wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
        demo.inject("agent_hang")
        victim = demo.faults[0].host
        assert victim is not None
        wait_for(lambda: moved_off(demo, victim), 40, f"the VMs of {victim} to run elsewhere")
        assert split_brains(demo.writes()) == []
    finally:
        demo.stop()


def ringfence(demo: Demo, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ringfence.cli", *args, "--config",
                             str(demo.config_path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_operator_actions_on_a_running_cluster(cluster: Demo) -> None:
    placed = cluster.placement_now()
    out = ringfence(cluster, "host", "maintenance", "host2", "on", "--operator", "bob")
    maintenance_request = request_of(out)
    wait_for(lambda: moved_off(cluster, "host2"), 30, "host2 to be drained")
    ringfence(cluster, "host", "maintenance", "host2", "off")
    drained = sorted(vm for vm, host in placed.items() if host == "host2")
    wait_for(lambda: all(cluster.placement_now(0.5).get(vm) == "host2" for vm in drained), 30,
             "the drained VMs to come home")
    ringfence(cluster, "vm", "migrate", "vm1", "--to", "host3")
    wait_for(lambda: cluster.placement_now(0.5).get("vm1") == "host3", 30, "vm1 on host3")
    # The command waits for the outcome: the leader's refusal is a refusal (exit 1).
    again = subprocess.run([sys.executable, "-m", "ringfence.cli", "vm", "migrate", "vm1",
                            "--to", "host3", "--config", str(cluster.config_path)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "refused: vm1 already runs on host3" in again.stdout
    stopped = ringfence(cluster, "vm", "stop", "vm2", "--operator", "alice")
    stop_request = request_of(stopped)
    assert "done: " in stopped, stopped
    wait_for(lambda: "vm2" not in cluster.placement_now(0.5), 30, "vm2 to stop")
    time.sleep(2.0)
    assert "vm2" not in cluster.placement_now(0.5), "a stopped VM must stay stopped"
    ringfence(cluster, "vm", "start", "vm2")
    wait_for(lambda: "vm2" in cluster.placement_now(0.5), 30, "vm2 to run again")
    out = ringfence(cluster, "vm", "force-start", "vm3", "--host", "host1", "--operator",
                    "alice")
    assert "alice forces vm3 onto host1" in out
    wait_for(lambda: cluster.placement_now(0.5).get("vm3") == "host1", 30, "vm3 on host1")
    assert split_brains(cluster.writes()) == []
    status = ringfence(cluster, "status", "--json")
    assert '"leader"' in status
    # Audit: the request and its outcome carry the operator and the request id.
    wait_for(lambda: any(e["kind"] == "vm_stopped" and e.get("request") == stop_request
                         for e in cluster.journal()), 10, "vm2's stop in the journal")
    journal = cluster.journal()
    asked = [e for e in journal if e.get("request") == stop_request]
    assert {e["kind"] for e in asked} >= {"vm_stop_requested", "vm_stopped"}
    assert all(e["operator"] == "alice" and e["planned"] for e in asked)
    assert any(e["kind"] == "maintenance_on" and e.get("operator") == "bob"
               and e.get("request") == maintenance_request for e in journal)
    assert any(e["kind"] == "vm_migrating" and e.get("request") == maintenance_request
               for e in journal), "the drain's migrations carry the maintenance request"
    exported = subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "journal", "export", "--journal",
         str(cluster.state), "--operator", "alice", "--json"],
        capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    kinds = [json.loads(line)["kind"] for line in exported]
    assert "vm_stop_requested" in kinds and "vm_stopped" in kinds
    assert all(json.loads(line)["operator"] == "alice" for line in exported)


def request_of(output: str) -> str:
    """The request id a CLI action prints (`...; request r-0123456789ab`)."""
    match = re.search(r"request (r-[0-9a-f]{12})", output)
    assert match, output
    return match.group(1)
