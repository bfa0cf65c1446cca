"""Findings about the cluster's design, failure-independent: two hosts without a
witness, an even number of store members, a single heartbeat network (or hosts on only one),
hosts without a fence agent.

Nothing here raises for a validated configuration.
"""

from __future__ import annotations

from ringfence.check.failures import _Cluster
from ringfence.check.results import _Findings
from ringfence.check.timing import _watchdog_recovery
from ringfence.check.words import _dur, _names


def _design_findings(cluster: _Cluster, out: _Findings) -> None:
    config = cluster.config
    members = cluster.members
    witnesses = set(cluster.witness_names)
    member_witnesses = [m for m in members if m in witnesses]
    two_node = len(cluster.host_names) == 2 and not member_witnesses
    if two_node:
        out.add("warning", "two_node_no_witness", None,
                f"two hosts ({_names(cluster.host_names)}) and no witness among the store "
                "members: when every link between them is cut (a split), neither side keeps a "
                "store majority and every VM stops (seed 004, SplitSite example 1); add a "
                "witness on a third machine")
    if len(members) > 1 and len(members) % 2 == 0 and not two_node:
        out.add("warning", "even_store_members", None,
                f"{len(members)} store members ({_names(members)}): a majority needs "
                f"{len(members) // 2 + 1}, so the last member adds no tolerance and a split "
                "into halves stops every VM; add or remove a member (a witness is enough)")
    if len(cluster.host_names) > 1:
        heartbeat = config.heartbeat_networks()
        if len(heartbeat) < 2:
            out.add("warning", "heartbeat_networks", None,
                    f"one heartbeat network ({_names(heartbeat)}): when that link is lost a "
                    "host can not be told from a lost host (seed 002); add a second heartbeat "
                    "network on separate NICs and switches")
        else:
            single = sorted(h for h in cluster.host_names
                            if len(cluster.nets[h] & cluster.heartbeat) < 2)
            if single:
                out.add("warning", "heartbeat_networks", None,
                        f"hosts on a single heartbeat network: {_names(single)}; one lost link "
                        "can not be told from a lost host for them (seed 002)")
    unfenced = sorted(h for h in cluster.host_names if h not in config.fencing)
    if unfenced:
        t = config.timing
        out.add("info", "no_fence_agent", None,
                f"hosts without a fence agent (watchdog path only): {_names(unfenced)}; their "
                f"VMs restart up to host_lease_ttl + watchdog_timeout + clock_margin = "
                f"{_dur(t.host_lease_ttl)} + {_dur(t.watchdog_timeout)} + "
                f"{_dur(t.clock_margin)} = {_dur(_watchdog_recovery(config))} after the host "
                "dies, plus the restart itself")
