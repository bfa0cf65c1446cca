"""What an idle ringfence agent costs on a real lab cluster: CPU and memory per agent, and
heartbeat datagrams per second, at 3, 8 and 16 namespace hosts.

Each size is its own lab: N hosts on two heartbeat networks, one process VM per host, three
etcd members (the first three hosts), no fault. After the cluster settled (``--settle``), the
agents' CPU time (user + system, from /proc) is sampled over ``--window``; memory is each
agent's resident set (VmRSS) at the end, without its watchdog supervisor or its VMs. Heartbeat
datagrams are counted by an nftables counter on the lab's switch (UDP to the heartbeat ports,
every copy forwarded between two hosts).

    python bench/lab_agent_cost.py [--hosts 3 8 16] [--settle 20s] [--window 30s]

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from lab_common import machine_line, open_lab, three_hosts
from ringfence.lab import netns
from ringfence.units import parse_duration

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw[raw.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def heartbeat_count(switch: str) -> int:
    out = netns.in_ns(switch, "nft", "-j", "list", "table", "bridge", "ringfence_count").stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule:
            for expression in rule["expr"]:
                if "counter" in expression:
                    return int(expression["counter"]["packets"])
    return 0


def measure(hosts: int, settle: float, window: float) -> None:
    data = three_hosts(fencing=True, vms=hosts, hosts=hosts)
    data["cluster"]["store"] = {"members": [f"host{i + 1}" for i in range(3)]}
    with open_lab(data) as lab:
        assert lab.hosts is not None and lab.topology is not None
        ports = sorted(set(lab.topology.ports[n] for n in lab.topology.heartbeat))
        netns.nft(lab.topology.switch,
                  "table bridge ringfence_count {\n  chain count { type filter hook forward "
                  f"priority 10; policy accept;\n    udp dport {{ {', '.join(map(str, ports))} }}"
                  " counter\n  }\n}\n")
        lab.wait(settle)
        agents = {name: spec.agent.pid for name, spec in lab.hosts.hosts.items()
                  if spec.agent is not None}
        before = {name: cpu_seconds(pid) for name, pid in agents.items()}
        packets = heartbeat_count(lab.topology.switch)
        start = lab.records.now()
        lab.wait(window)
        elapsed = lab.records.now() - start
        cpu = [100 * (cpu_seconds(pid) - before[name]) / elapsed for name, pid in agents.items()]
        rss = [rss_mib(pid) for pid in agents.values()]
        rate = (heartbeat_count(lab.topology.switch) - packets) / elapsed
    print(f"{hosts:3} hosts: CPU per agent {statistics.median(cpu):.1f} % of a core median "
          f"({max(cpu):.1f} % max), RSS {statistics.median(rss):.0f} MiB median, heartbeats "
          f"{rate:.0f} datagrams/s in all ({rate / hosts:.0f} per agent sent)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 8, 16])
    parser.add_argument("--settle", default="20s")
    parser.add_argument("--window", default="30s")
    args = parser.parse_args()
    print(f"agent cost at idle; {machine_line()}", flush=True)
    for hosts in args.hosts:
        measure(hosts, parse_duration(args.settle), parse_duration(args.window))
    print(machine_line())


if __name__ == "__main__":
    main()
