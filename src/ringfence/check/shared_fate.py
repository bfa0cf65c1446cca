"""Findings about shared fate, failure by failure: VMs without a place (also
at the start), anti-affinity groups broken or down together, monitoring groups that die with
what they watch, store quorum lost, hosts lost along with the failed one, fence agents reached
over a lost network.

Nothing here raises for a validated configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from ringfence.check.alerts import _deadman_text, _route_findings
from ringfence.check.failures import _NO_MAJORITY, _Cluster, _is_monitoring, _Outcome
from ringfence.check.results import FailureResult, _Findings
from ringfence.check.timing import _watchdog_recovery
from ringfence.check.words import _dur, _names, _plural


def _quorum_text(cluster: _Cluster, result: FailureResult, down: Sequence[str]) -> str:
    members = cluster.members
    need = len(members) // 2 + 1
    text = (f"the store loses its majority: it needs {need} of its {len(members)} members "
            f"({_names(members)}) up and in touch")
    gone = [m for m in members if m in down]
    if gone:
        text += f", and {_names(gone)} {'is' if len(gone) == 1 else 'are'} down"
    elif result.kind == "network":
        text += f", and without {result.target} no {need} of them reach each other"
    return text


def _stay_down(count: int) -> str:
    return f"{_plural(count, 'VM')} {'stays' if count == 1 else 'stay'} down"


def _failure_findings(cluster: _Cluster, outcome: _Outcome, out: _Findings) -> None:
    r = outcome.result
    config = cluster.config
    down = [] if r.kind == "network" else [r.target]
    total_vms = len(config.vms)
    if not r.survivors:
        if any(lost.why == _NO_MAJORITY for lost in r.lost_hosts):
            out.add("error", "quorum_lost", r.failure,
                    f"{_quorum_text(cluster, r, down)}: every host stops its VMs and "
                    f"self-fences; {_stay_down(total_vms)} until the store is back")
        else:
            why = "; ".join(f"{lost.host} {lost.why}" for lost in r.lost_hosts)
            out.add("error", "cluster_lost", r.failure,
                    f"no host survives ({why}): {_stay_down(total_vms)}")
        if config.alerts and any(a.kind not in ("deadman", "log") for a in config.alerts):
            out.add("warning", "alert_path", r.failure,
                    f"no host survives to send alerts; {_deadman_text(config)}")
        return
    extra = [lost for lost in r.lost_hosts if not (r.kind == "host" and lost.host == r.target)]
    if extra:
        listing = "; ".join(f"{lost.host} {lost.why}" for lost in extra)
        vms = sorted(vm for lost in extra for vm in cluster.vms_on(lost.host))
        out.add("warning", "host_lost", r.failure,
                f"{_plural(len(extra), 'host')} lost with it: {listing}"
                + (f"; {'its' if len(extra) == 1 else 'their'} VMs restart elsewhere: "
                   f"{_names(vms)}" if vms else ""))
    if r.vms_without_place:
        listing = "; ".join(f"{u.vm} ({u.reason})" for u in r.vms_without_place)
        out.add("error", "vm_without_place", r.failure,
                f"{_plural(len(r.vms_without_place), 'VM has', 'VMs have')} no place to run: "
                f"{listing}")
    groups = {g.name: g for g in config.groups}
    for name in r.groups_broken:
        group = groups[name]
        homeless = sorted(m for m in group.vms if outcome.where(m) is None)
        text = (f"anti-affinity group {name} ({_names(sorted(group.vms))}) can not be kept "
                "apart: it "
                f"needs {len(group.vms)} distinct hosts, {_plural(len(r.survivors), 'host')} "
                f"{'survives' if len(r.survivors) == 1 else 'survive'} "
                f"({_names(r.survivors)})")
        if homeless:
            text += f"; without a place: {_names(homeless)}"
        out.add("error", "group_broken", r.failure, text)
    for name in r.groups_down:
        group = groups[name]
        members = _names(sorted(group.vms))
        if _is_monitoring(group):
            out.add("warning", "alert_path", r.failure,
                    f"every member of group {name} ({members}) runs on a lost host: nothing "
                    "watches while they restart, and the alerts they would send die with "
                    f"them; {_deadman_text(config)}")
        else:
            out.add("warning", "group_down", r.failure,
                    f"every member of anti-affinity group {name} ({members}) runs on a lost "
                    "host: all of them are down at once until they restart")
    _route_findings(cluster, outcome, out)
    if r.kind == "network":
        _network_findings(cluster, r, out)


def _network_findings(cluster: _Cluster, r: FailureResult, out: _Findings) -> None:
    config = cluster.config
    network = config.network(r.target)
    fenced_over = sorted(h for h, f in config.fencing.items() if f.network == r.target)
    if fenced_over:
        agents = "the fence agent" if len(fenced_over) == 1 else "the fence agents"
        out.add("info", "fence_path", r.failure,
                f"{agents} of {_names(fenced_over)} {'is' if len(fenced_over) == 1 else 'are'} "
                f"reached over {r.target}: "
                f"while it is down their VMs recover by the watchdog path "
                f"({_dur(_watchdog_recovery(config))} after a host dies)")
    roles = [role for role in network.role if role in ("vm", "storage")]
    on = [h for h in cluster.host_names if r.target in cluster.nets[h]]
    if roles and len(on) == len(cluster.host_names) and len(on) > 1:
        out.add("info", "shared_network", r.failure,
                f"every host is on {r.target} ({'/'.join(roles)}): its failure hits every host "
                "alike, so moving the VMs that use it can not help them")


def _start_findings(cluster: _Cluster, out: _Findings) -> None:
    for vm in sorted(cluster.start_reasons):
        out.add("error", "vm_without_place", None,
                f"VM {vm} has no place even with every host up: {cluster.start_reasons[vm]}")
    for group in cluster.anti_groups:
        hosts = [cluster.start.get(m) for m in group.vms]
        seen: dict[str, list[str]] = {}
        for member, host in sorted(zip(group.vms, hosts, strict=True)):
            if host is not None:
                seen.setdefault(host, []).append(member)
        shared = sorted((host, vms) for host, vms in seen.items() if len(vms) > 1)
        if shared:
            listing = "; ".join(f"{_names(vms)} on {host}" for host, vms in shared)
            out.add("error", "group_broken", None,
                    f"anti-affinity group {group.name} already shares a host ({listing}): one "
                    "host failure takes them together; give them different host: fields")
