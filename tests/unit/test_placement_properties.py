"""Placement and planned moves: properties that must hold for any input (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.config import VM, Group
from ringfence.core.moves import admission_refusal, plan_moves
from ringfence.core.placement import HostRoom, plan

GiB = 1 << 30


@st.composite
def clusters(draw: st.DrawFn) -> tuple[dict[str, HostRoom], list[VM], list[Group]]:
    hosts = draw(st.integers(min_value=1, max_value=8))
    rooms = {f"h{i}": HostRoom(f"h{i}", draw(st.integers(1, 32)),
                               draw(st.integers(1, 64)) * GiB) for i in range(hosts)}
    count = draw(st.integers(min_value=0, max_value=30))
    vms = [VM(name=f"v{i}", cpus=draw(st.integers(1, 8)), memory=draw(st.integers(1, 16)) * GiB,
              priority=draw(st.integers(0, 3)) * 50,
              prefer=draw(st.lists(st.sampled_from(sorted(rooms)), max_size=2, unique=True)))
           for i in range(count)]
    groups: list[Group] = []
    if count >= 2 and draw(st.booleans()):
        members = draw(st.lists(st.sampled_from([v.name for v in vms]), min_size=2,
                                max_size=min(4, count), unique=True))
        groups.append(Group(name="anti", vms=members, rule="anti_affinity"))
    if count >= 4 and draw(st.booleans()):
        groups.append(Group(name="near", vms=[vms[-1].name, vms[-2].name], rule="affinity"))
    return rooms, vms, groups


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_no_plan_overcommits_or_breaks_anti_affinity(
        cluster: tuple[dict[str, HostRoom], list[VM], list[Group]]) -> None:
    rooms, vms, groups = cluster
    capacity = {n: (r.free_cpus, r.free_memory) for n, r in rooms.items()}
    result = plan(vms, rooms, groups)
    used: dict[str, list[VM]] = {}
    for vm in vms:
        host = result.assignments[vm.name]
        if host is None:
            assert result.reasons[vm.name]
            continue
        used.setdefault(host, []).append(vm)
    for host, placed in used.items():
        assert sum(v.cpus for v in placed) <= capacity[host][0]
        assert sum(v.memory for v in placed) <= capacity[host][1]
    for group in groups:
        if group.rule == "anti_affinity":
            hosts = [result.assignments[m] for m in group.vms if result.assignments[m]]
            assert len(hosts) == len(set(hosts)), (group, hosts)


@settings(max_examples=100, deadline=None)
@given(clusters())
def test_plans_are_deterministic(cluster: tuple[dict[str, HostRoom], list[VM], list[Group]]
                                 ) -> None:
    rooms, vms, groups = cluster

    def fresh() -> dict[str, HostRoom]:
        return {n: HostRoom(r.name, r.free_cpus, r.free_memory) for n, r in rooms.items()}

    assert plan(vms, fresh(), groups) == plan(list(reversed(vms)), fresh(), groups)


@settings(max_examples=100, deadline=None)
@given(clusters(), st.data())
def test_drain_moves_never_target_the_drained_host_or_overcommit(
        cluster: tuple[dict[str, HostRoom], list[VM], list[Group]], data: st.DataObject) -> None:
    rooms, vms, groups = cluster
    placement = plan(vms, rooms, groups)
    placed = {v: h for v, h in placement.assignments.items() if h}
    drained = data.draw(st.sampled_from(sorted(rooms)))
    specs = {v.name: v for v in vms}
    before = {n: (r.free_cpus, r.free_memory) for n, r in rooms.items()}
    targets = {n: r for n, r in rooms.items() if n != drained}
    moves = plan_moves(placed=placed, specs=specs, rooms=targets, groups=groups,
                       draining=[drained], degraded=[], homes={}, failback=False)
    extra: dict[str, list[VM]] = {}
    for move in moves:
        assert move.source == drained and move.target != drained and move.home == drained
        extra.setdefault(move.target, []).append(specs[move.vm])
    for host, added in extra.items():
        assert sum(v.cpus for v in added) <= before[host][0]
        assert sum(v.memory for v in added) <= before[host][1]


def test_admission_control_refuses_what_the_reserve_can_not_cover() -> None:
    def rooms() -> dict[str, HostRoom]:
        result = {n: HostRoom(n, 16, 64 * GiB) for n in ("h1", "h2", "h3")}
        for name, vm in (("h1", "a"), ("h2", "b"), ("h3", "c")):
            result[name].take(VM(name=vm, cpus=4, memory=30 * GiB))
        return result

    specs = {n: VM(name=n, cpus=4, memory=30 * GiB) for n in "abc"}
    first = VM(name="x1", cpus=4, memory=30 * GiB)
    assert admission_refusal(first, "h1", rooms(), specs, [], 1) is None
    loaded = rooms()
    loaded["h1"].take(first)
    second = VM(name="x2", cpus=4, memory=30 * GiB)
    refusal = admission_refusal(second, "h2", loaded, {**specs, "x1": first}, [], 1)
    assert refusal is not None and "without a place" in refusal
    assert admission_refusal(second, "h2", loaded, {**specs, "x1": first}, [], 0) is None
