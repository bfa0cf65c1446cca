"""The safety rules, checked on simulated runs of the real agent and manager."""

from __future__ import annotations

import pytest

from conftest import first_event, run, runs_of, scenario


def test_partitioned_minority_stops_before_majority_starts() -> None:
    result = run(scenario(events=[
        {"at": "20s", "do": "partition", "groups": [["host1"], ["host2", "host3"]]},
    ]))
    assert not result.violations
    runs = runs_of(result, "app")
    on_host1 = [r for r in runs if r[0] == "host1"]
    elsewhere = [r for r in runs if r[0] != "host1"]
    assert on_host1 and elsewhere, runs
    stopped = on_host1[0][2]
    started = min(r[1] for r in elsewhere)
    assert 20 < stopped < started, runs
    # The gap is at least the watchdog wait: the minority's watchdog fired before.
    assert started - stopped >= 4.0
    assert first_event(result, "self_fence", "host1") == stopped


def test_resumed_host_never_runs_a_vm_whose_lease_moved() -> None:
    # host1 hangs long enough for its lease to expire and its VM to move, then resumes.
    # Its hardware watchdog kept counting during the hang and reset it first.
    result = run(scenario(events=[
        {"at": "20s", "do": "hang", "host": "host1"},
        {"at": "60s", "do": "resume", "host": "host1"},
    ]))
    assert not result.violations
    runs = runs_of(result, "app")
    assert any(host != "host1" for host, _, _ in runs)
    assert all(end <= 20.0 for host, _, end in runs if host == "host1"), runs
    assert first_event(result, "watchdog_reset", "host1") < first_event(result, "vm_recovered")


def test_frozen_watchdog_hang_is_made_safe_by_the_fence_agent() -> None:
    # The adversarial hang: the watchdog stops counting too. Only the power fence makes
    # recovery safe: the leader fences host1 before it moves the VM.
    fencing = {h: {"agent": "power"} for h in ("host1", "host2", "host3")}
    result = run(scenario(cluster_fencing=fencing, events=[
        {"at": "20s", "do": "hang", "host": "host1", "watchdog": "frozen"},
        {"at": "60s", "do": "resume", "host": "host1"},
    ]))
    assert not result.violations
    kinds = [e.kind for e in result.world.entries]
    assert kinds.index("fence_agent_ok") < kinds.index("vm_recovered")  # fenced, then moved
    assert all(end <= 20.0 for host, _, end in runs_of(result, "app") if host == "host1")


def test_short_hang_keeps_the_vm_in_place() -> None:
    # A hang shorter than the lease: the host resumes, renews, and nothing moves.
    result = run(scenario(events=[
        {"at": "20s", "do": "hang", "host": "host1"},
        {"at": "22s", "do": "resume", "host": "host1"},
    ]))
    assert not result.violations
    assert {host for host, _, _ in runs_of(result, "app")} == {"host1"}
    assert not [e for e in result.world.entries if e.kind == "self_fence"]


def test_hang_just_past_the_safety_margin_self_fences_on_resume() -> None:
    # Resumes, cut off from the store, after its lease is stale by its own clock (last
    # renewal at 18 s, stale at 23 s) but before the watchdog fires (last pet at 19.6 s, fires
    # at 23.6 s): the agent destroys its VM at once; the VM runs nowhere else yet.
    result = run(scenario(events=[
        {"at": "19.7s", "do": "hang", "host": "host1"},
        {"at": "21s", "do": "partition", "groups": [["host1"], ["host2", "host3"]]},
        {"at": "23.45s", "do": "resume", "host": "host1"},
    ]))
    assert not result.violations
    assert first_event(result, "self_fence", "host1") == 23.45
    assert "watchdog_reset" not in {e.kind for e in result.world.entries if e.t < 23.45}


def _power_loss_with_fencing(victim: str) -> float:
    """Seconds from the power loss of `victim` (which runs the VM) to the VM running again."""
    fencing = {h: {"agent": "power", "duration": "500ms"} for h in ("host1", "host2", "host3")}
    vms = [{"name": "app", "cpus": 2, "memory": "4GiB", "host": victim}]
    result = run(scenario(cluster_fencing=fencing, cluster_vms=vms, events=[
        {"at": "20s", "do": "power_off", "host": victim},
    ]))
    assert not result.violations
    return min(start for host, start, _ in runs_of(result, "app") if host != victim) - 20


def test_power_fence_fast_path_recovers_within_two_seconds() -> None:
    # host3 is not the leader: detection (0.8 s) + fence (0.5 s) + two cycles.
    assert _power_loss_with_fencing("host3") < 2.0


def test_power_fence_path_when_the_leader_dies_too() -> None:
    # host1 leads the cluster and is the store's leader as well: a store election (1 s), the
    # manager lease (2 s, restarted by the election) and then the fast path.
    assert _power_loss_with_fencing("host1") < 5.0


def test_manager_host_dies_mid_recovery_and_a_new_leader_finishes() -> None:
    # host1 leads and runs 'a'; host2 runs 'b'. host2 dies; host1 dies 1 s later, during the
    # wait for host2's watchdog. host3 must take over leadership and recover both.
    data = scenario(
        cluster_hosts=[{"name": f"host{i}", "cpus": 16, "memory": "64GiB"} for i in (1, 2, 3)],
        cluster_witnesses=[{"name": "q1"}, {"name": "q2"}],
        cluster_store={"members": ["host1", "host2", "host3", "q1", "q2"]},
        cluster_vms=[{"name": "a", "cpus": 2, "memory": "4GiB", "host": "host1"},
                     {"name": "b", "cpus": 2, "memory": "4GiB", "host": "host2"}],
        events=[{"at": "20s", "do": "power_off", "host": "host2"},
                {"at": "27s", "do": "power_off", "host": "host1"}],
    )
    result = run(data)
    assert not result.violations
    assert first_event(result, "manager_elected", "host3") > 27
    for vm in ("a", "b"):
        assert [h for h, _, end in runs_of(result, vm) if end == 120.0] == ["host3"]


def test_cold_start_waits_for_quorum() -> None:
    data = scenario(events=[
        {"at": "10s", "do": "power_off", "host": h} for h in ("host1", "host2", "host3")
    ] + [{"at": "20s", "do": "power_on", "host": "host2"}])
    result = run(data)
    assert not result.violations
    assert all(end <= 10 for _, _, end in runs_of(result, "app"))
    assert result.world.host_state("host2", 100) == "waiting_for_quorum"


def test_a_host_that_can_not_arm_its_watchdog_never_joins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ringfence.sim.parts import SimWatchdog

    real_arm = SimWatchdog.arm

    def arm(self: SimWatchdog, timeout: float) -> None:
        if self.host == "host1":
            raise OSError(19, "No such device: /dev/watchdog")
        real_arm(self, timeout)

    monkeypatch.setattr(SimWatchdog, "arm", arm)
    result = run(scenario())
    assert not result.violations
    assert first_event(result, "watchdog_missing", "host1") == 0.0
    assert all(h != "host1" for h, _, _ in runs_of(result, "app"))
    assert result.world.host_state("host1", 60) == "waiting_for_quorum"
