"""Simulation speed: simulated seconds per wall-clock second, for 3, 16 and 64 hosts.

Each run simulates one hour (`--minutes` to change) of a cluster with two heartbeat links
(200 ms), four VMs per host, a five-member store, and one host that loses power at 10 minutes
and comes back at 20 (a sixth and a third of the run). Target (DESIGN.md): 64 hosts, one
simulated hour, under 60 s wall on a 2-core machine.

    python bench/sim_speed.py [--minutes 60] [--hosts 3 16 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from ringfence.sim.runner import simulate
from ringfence.sim.scenario import parse_scenario


def scenario(hosts: int, minutes: float) -> dict[str, object]:
    names = [f"h{i:02d}" for i in range(hosts)]
    return {
        "name": f"bench-{hosts}",
        "duration": f"{minutes * 60:g}s",
        "cluster": {
            "networks": [{"name": "ring0", "role": "heartbeat"},
                         {"name": "ring1", "role": "heartbeat"}],
            "hosts": [{"name": n, "cpus": 64, "memory": "512GiB"} for n in names],
            "store": {"members": names[: min(5, hosts)]},
            "vms": [{"name": f"vm{i:04d}", "cpus": 2, "memory": "8GiB",
                     "host": names[i % hosts]} for i in range(hosts * 4)],
        },
        "events": [
            {"at": f"{minutes * 60 / 6:g}s", "do": "power_off", "host": names[-1]},
            {"at": f"{minutes * 60 / 3:g}s", "do": "power_on", "host": names[-1]},
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 16, 64])
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{'hosts':>5} {'simulated':>10} {'wall':>8} {'sim s / wall s':>15} {'safe':>5}")
    for hosts in args.hosts:
        spec = parse_scenario(scenario(hosts, args.minutes))
        started = time.perf_counter()
        result = simulate(spec)
        wall = time.perf_counter() - started
        print(f"{hosts:>5} {spec.duration:>9.0f}s {wall:>7.1f}s {spec.duration / wall:>15.0f} "
              f"{'yes' if not result.violations else 'NO':>5}")


if __name__ == "__main__":
    main()
