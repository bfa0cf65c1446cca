"""Placement basics (issue 4 extends these)."""

from __future__ import annotations

from ringfence.config import VM, Group
from ringfence.core.placement import HostRoom, plan

GiB = 1 << 30


def rooms() -> dict[str, HostRoom]:
    return {"h1": HostRoom("h1", 8, 16 * GiB), "h2": HostRoom("h2", 8, 32 * GiB)}


def test_priority_first_and_capacity_never_overcommitted() -> None:
    vms = [VM(name="low", cpus=6, memory=8 * GiB, priority=1),
           VM(name="high", cpus=6, memory=8 * GiB, priority=9),
           VM(name="mid", cpus=6, memory=8 * GiB, priority=5)]
    result = plan(vms, rooms())
    assert result.assignments["high"] == "h2"  # most free memory
    assert result.assignments["mid"] == "h1"
    assert result.assignments["low"] is None
    assert "needs 6 CPUs" in result.reasons["low"]


def test_anti_affinity_keeps_monitors_apart() -> None:
    vms = [VM(name="mon-a", cpus=1, memory=GiB), VM(name="mon-b", cpus=1, memory=GiB)]
    groups = [Group(name="monitoring", vms=["mon-a", "mon-b"], rule="anti_affinity")]
    result = plan(vms, rooms(), groups)
    assert result.assignments["mon-a"] != result.assignments["mon-b"]
    only_one = {"h1": HostRoom("h1", 8, 16 * GiB)}
    result = plan(vms, only_one, groups)
    assert result.assignments["mon-a"] == "h1" and result.assignments["mon-b"] is None
    assert "anti-affinity" in result.reasons["mon-b"]
