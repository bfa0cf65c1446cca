"""What an idle ringfence agent costs on a real lab cluster: CPU and memory per agent, and
heartbeat datagrams per second, at 3, 8 and 16 namespace hosts.

Each size is its own lab: N hosts on two heartbeat networks, one process VM per host, three
etcd members (the first three hosts), no fault. After the cluster settled (``--settle``), the
agents' CPU time (user + system, from /proc) is sampled over ``--window``; memory is each
agent's resident set (VmRSS) at the end, without its watchdog supervisor or its VMs. Heartbeat
datagrams are counted by an nftables counter on the lab's switch (UDP to the heartbeat ports,
every copy forwarded between two hosts). A second line per size gives the whole host: every
process of the host's namespace (children it reaped included) by kind: the agent with its
watchdog supervisor, the VM, and the etcd member on the hosts that have one.

With ``--pacemaker`` the same is measured for Pacemaker 2.1 + corosync 3 in the same
three-namespace topology (`pacemaker_lab`: one network, one fence device, one Dummy resource
with a 1 s monitor; packages from scripts/install-pacemaker): corosync alone, and every process
of the node's namespace (corosync, pacemakerd and its daemons, the resource's monitor runs).

    python bench/lab_agent_cost.py [--hosts 3 8 16] [--settle 20s] [--window 30s] [--pacemaker]

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from lab_common import machine_line, open_lab, three_hosts
from pacemaker_lab import NODES, PacemakerLab
from ringfence.lab import netns
from ringfence.units import parse_duration

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of `pid` (with `children`: and of the children it reaped)."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw[raw.rfind(b")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def kind_of(pid: int) -> str:
    words = netns.cmdline(pid)
    text = " ".join(words)
    if "ringfence.hypervisor.process_vm" in text:
        return "VM"
    if "ringfence.fence.process_watchdog" in text or " agent " in f" {text} ":
        return "agent"
    if words and os.path.basename(words[0]) == "etcd":
        return "etcd"
    if words and os.path.basename(words[0]) == "corosync":
        return "corosync"
    return "other"


def namespace_cpu(pids: list[int]) -> dict[int, tuple[str, float]]:
    """Each process's kind and CPU seconds (children it reaped included)."""
    found = {}
    for pid in pids:
        try:
            found[pid] = (kind_of(pid), cpu_seconds(pid, children=True))
        except (OSError, ValueError, IndexError):
            continue
    return found


def used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
         elapsed: float) -> dict[str, float]:
    """% of a core by kind over the window (a process born in it counts from 0)."""
    out: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        start = before.get(pid, (kind, 0.0))[1]
        out[kind] = out.get(kind, 0.0) + 100 * (seconds - start) / elapsed
    return out


def per_kind(samples: list[dict[str, float]], kinds: list[str]) -> str:
    parts = []
    for kind in kinds:
        values = [sample[kind] for sample in samples if kind in sample]
        if values:
            parts.append(f"{kind} {statistics.median(values):.1f} %")
    total = [sum(sample.values()) for sample in samples]
    parts.append(f"whole namespace {statistics.median(total):.1f} % median, "
                 f"{max(total):.1f} % max")
    return ", ".join(parts)


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
        spaces = {name: spec.inode for name, spec in lab.hosts.hosts.items()}
        before = {name: cpu_seconds(pid) for name, pid in agents.items()}
        whole = {name: namespace_cpu(netns.pids_in(inode)) for name, inode in spaces.items()}
        packets = heartbeat_count(lab.topology.switch)
        start = lab.records.now()
        lab.wait(window)
        elapsed = lab.records.now() - start
        cpu = [100 * (cpu_seconds(pid) - before[name]) / elapsed for name, pid in agents.items()]
        hosts_used = [used(whole[name], namespace_cpu(netns.pids_in(inode)), elapsed)
                      for name, inode in spaces.items()]
        rss = [rss_mib(pid) for pid in agents.values()]
        rate = (heartbeat_count(lab.topology.switch) - packets) / elapsed
    print(f"{hosts:3} hosts: CPU per agent {statistics.median(cpu):.2f} % of a core median "
          f"({max(cpu):.2f} % max), RSS {statistics.median(rss):.0f} MiB median, heartbeats "
          f"{rate:.0f} datagrams/s in all ({rate / hosts:.0f} per agent sent)", flush=True)
    print(f"{'':9}per host: {per_kind(hosts_used, ['agent', 'VM', 'etcd'])} (agent: with "
          f"its watchdog supervisor; etcd: the {min(3, hosts)} hosts with a member)", flush=True)


def measure_pacemaker(settle: float, window: float) -> None:
    """The same window for Pacemaker + corosync in three namespaces."""
    # Its addresses are 10.<200 + slot>.0.x: a slot under 56, apart from the side-by-side
    # bench's (the ringfence lab's slot).
    slot = next(n for n in range(40, 56) if not Path(f"/run/netns/rfpm{n}-sw").exists())
    lab = PacemakerLab(Path(tempfile.gettempdir()) / f"ringfence-bench-cost-pcmk-{slot}",
                       slot=slot)
    try:
        lab.up()
        time.sleep(settle)
        before = {node: namespace_cpu(lab.pids(node)) for node in NODES}
        start = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - start
        samples = [used(before[node], namespace_cpu(lab.pids(node)), elapsed) for node in NODES]
        rss = [rss_mib(pid) for node in NODES for pid in lab.pids(node)
               if kind_of(pid) == "corosync"]
    finally:
        lab.down()
    print(f"Pacemaker + corosync, 3 nodes: per node: {per_kind(samples, ['corosync'])}; "
          f"corosync RSS {statistics.median(rss):.0f} MiB median", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 8, 16])
    parser.add_argument("--settle", default="20s")
    parser.add_argument("--window", default="30s")
    parser.add_argument("--pacemaker", action="store_true",
                        help="also measure Pacemaker + corosync in the same topology")
    args = parser.parse_args()
    print(f"agent cost at idle; {machine_line()}", flush=True)
    for hosts in args.hosts:
        measure(hosts, parse_duration(args.settle), parse_duration(args.window))
    if args.pacemaker:
        measure_pacemaker(parse_duration(args.settle), parse_duration(args.window))
    print(machine_line())


if __name__ == "__main__":
    main()
