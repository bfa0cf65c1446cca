"""The split-brain checker on hand-made ground truth: it must bite."""

from __future__ import annotations

from ringfence.sim.checker import split_brains
from ringfence.sim.world import Run


def test_overlapping_runs_on_two_hosts_are_a_violation() -> None:
    (v,) = split_brains([Run("app", "a", 0.0, 10.0), Run("app", "b", 9.5, 20.0)])
    assert (v.vm, v.hosts, v.start, v.end) == ("app", ("a", "b"), 9.5, 10.0)


def test_handover_at_one_instant_is_not_a_violation() -> None:
    assert not split_brains([Run("app", "a", 0.0, 10.0), Run("app", "b", 10.0, 20.0)])


def test_resumed_hung_host_counts_for_the_instant_it_resumes() -> None:
    # The guest ran again for zero time at 30 s (the agent destroyed it at once) while the
    # VM already ran on b: still two hosts running one VM at 30 s.
    runs = [Run("app", "a", 0.0, 10.0), Run("app", "b", 20.0, 60.0), Run("app", "a", 30.0, 30.0)]
    (v,) = split_brains(runs)
    assert v.start == v.end == 30.0


def test_runs_of_different_vms_or_one_host_never_conflict() -> None:
    runs = [Run("x", "a", 0.0, 10.0), Run("y", "b", 0.0, 10.0), Run("x", "a", 5.0, 8.0)]
    assert not split_brains(runs)


def test_a_live_migration_hands_one_guest_over_at_one_instant() -> None:
    # The host resumed from a hang and migrated its guest in the same instant: the guest ran
    # for zero time on the source, then continued on the target. One guest, not two.
    target = Run("app", "b", 30.0, 60.0)
    source = Run("app", "a", 30.0, 30.0, handed_to=target)
    assert not split_brains([Run("app", "a", 0.0, 20.0), source, target])


def test_a_copy_that_did_not_hand_over_still_counts_at_the_migration_instant() -> None:
    # The same instant, but the zero-length run on a is a stale copy (resumed after its lease
    # moved), and the run on b came from somewhere else: two guests.
    target = Run("app", "b", 30.0, 60.0)
    from_c = Run("app", "c", 10.0, 30.0, handed_to=target)
    stale = Run("app", "a", 30.0, 30.0)
    (v,) = split_brains([from_c, target, stale])
    assert (v.hosts, v.start) == (("b", "a"), 30.0) or (v.hosts, v.start) == (("a", "b"), 30.0)


def test_a_source_that_keeps_running_after_the_handover_is_a_violation() -> None:
    target = Run("app", "b", 30.0, 60.0)
    source = Run("app", "a", 0.0, 31.0, handed_to=target)
    (v,) = split_brains([source, target])
    assert (v.start, v.end) == (30.0, 31.0)


def test_a_downtime_bound_fails_for_a_vm_that_never_ran() -> None:
    # Found by the lab: agents that never joined started nothing, and "max_downtime: 0s"
    # passed, since downtime counts only after the first start.
    from conftest import run, scenario

    result = run(scenario(  # bigger than any host: it never starts
        cluster_vms=[{"name": "app", "cpus": 2, "memory": "128GiB"}],
        expect=[{"vm": "app", "max_downtime": "0s"}]))
    assert not result.world.runs
    (outcome,) = result.outcomes
    assert not outcome.passed and "never ran" in outcome.detail


# ----------------------------------------------------------------------------- delivered alerts
def _routes_scenario(**expect: object) -> dict[str, object]:
    from conftest import scenario

    data = scenario(events=[{"at": "20s", "do": "power_off", "host": "host2"}],
                    expect=[{"alert": "host2 fenced", **expect}])
    cluster = data["cluster"]
    assert isinstance(cluster, dict)
    cluster["vms"] = [{"name": "mon", "cpus": 2, "memory": "4GiB", "host": "host2"}]
    cluster["alerts"] = [
        {"kind": "alertmanager", "name": "am", "url": "http://mon:9093", "retries": 0},
        {"kind": "webhook", "name": "pager", "url": "https://pager.example/x"}]
    return data


def test_delivered_alerts_per_route() -> None:
    from conftest import run

    result = run(_routes_scenario(route="pager", delivered=True, by="35s"))
    assert result.passed, result.outcomes
    deliveries = {(d.route, d.delivered) for d in result.world.alert_deliveries
                  if "host2 fenced" in d.text}
    assert deliveries == {("pager", True), ("am", False)}
    kinds = [e.kind for e in result.world.entries if e.kind.startswith("alert_")]
    assert "alert_delivered" in kinds and "alert_failed" in kinds
    assert not run(_routes_scenario(route="am", delivered=True)).passed
    assert run(_routes_scenario(route="am", delivered=False)).passed
    assert run(_routes_scenario(delivered=True)).passed  # by some route


def test_a_delivered_expectation_names_a_known_route() -> None:
    import pytest

    from ringfence.errors import ConfigError
    from ringfence.sim.scenario import parse_scenario

    with pytest.raises(ConfigError) as caught:
        parse_scenario(_routes_scenario(route="pagr"))
    assert "expect[0].route: unknown alert route 'pagr'" in str(caught.value)
    assert "did you mean 'pager'" in str(caught.value)
