"""Placement speed: failover of one host, and a full re-plan, in clusters of 64/128/256 hosts.

The clusters hold about 39 VMs per host (10,000 VMs on 256 hosts), of mixed sizes and
priorities, with a few anti-affinity pairs and preferred hosts. Target (DESIGN.md): under 1 s
each for 256 hosts and 10,000 VMs on a 2-core machine. Prints the median of `--repeat` runs.

    python bench/placement.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

from ringfence.config import VM, Group
from ringfence.core.placement import HostRoom, plan

GiB = 1 << 30


def cluster(hosts: int, vms: int, rng: random.Random) -> tuple[list[str], list[VM], list[Group]]:
    names = [f"h{i:03d}" for i in range(hosts)]
    specs = [
        VM(name=f"vm{i:05d}", cpus=rng.choice([1, 2, 4]), memory=rng.choice([2, 4, 8]) * GiB,
           priority=rng.choice([0, 0, 50, 100]),
           prefer=[rng.choice(names)] if rng.random() < 0.05 else [])
        for i in range(vms)
    ]
    groups = [Group(name=f"g{i}", vms=[specs[2 * i].name, specs[2 * i + 1].name],
                    rule="anti_affinity") for i in range(vms // 200)]
    return names, specs, groups


def rooms_for(names: list[str], placed: dict[str, str], specs: dict[str, VM]
              ) -> dict[str, HostRoom]:
    rooms = {n: HostRoom(n, 256, 1024 * GiB) for n in names}
    for vm, host in placed.items():
        rooms[host].take(specs[vm])
    return rooms


def timed(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{'hosts':>5} {'VMs':>6} {'failover of one host':>22} {'full re-plan':>13} "
          f"{'unplaced':>9}")
    for hosts in (64, 128, 256):
        vms = round(10_000 * hosts / 256)
        names, specs, groups = cluster(hosts, vms, random.Random(hosts))
        by_name = {v.name: v for v in specs}
        full = plan(specs, rooms_for(names, {}, by_name), groups)
        placed = {vm: host for vm, host in full.assignments.items() if host}
        victim = names[0]
        lost = [by_name[vm] for vm, host in placed.items() if host == victim]
        survivors = {vm: host for vm, host in placed.items() if host != victim}

        def failover(survivors: dict[str, str] = survivors, lost: list[VM] = lost,
                     names: list[str] = names, by_name: dict[str, VM] = by_name,
                     groups: list[Group] = groups) -> None:
            rooms = rooms_for(names[1:], survivors, by_name)
            plan(lost, rooms, groups)

        def replan(specs: list[VM] = specs, names: list[str] = names,
                   by_name: dict[str, VM] = by_name, groups: list[Group] = groups) -> None:
            plan(specs, rooms_for(names, {}, by_name), groups)

        one = timed(failover, args.repeat)
        everything = timed(replan, args.repeat)
        unplaced = sum(1 for h in full.assignments.values() if h is None)
        print(f"{hosts:>5} {vms:>6} {one * 1000:>19.1f} ms {everything * 1000:>10.0f} ms "
              f"{unplaced:>9}  ({len(lost)} VMs moved in the failover)")


if __name__ == "__main__":
    main()
