"""Findings about alert routes: whether any route leaves the cluster, whether a
deadman route watches from outside, and which routes go through a VM that a failure takes
down (seed 001: the ticketing system ran on the hypervisor that failed).

Nothing here raises for a validated configuration.
"""

from __future__ import annotations

from ringfence.alerts.shared_fate import address_owner, endpoint_host, vm_named_by
from ringfence.check.failures import _Cluster, _Outcome
from ringfence.check.results import _Findings
from ringfence.check.words import _names
from ringfence.config import Alert, ClusterConfig


def _route_label(alert: Alert) -> str:
    where = alert.url or alert.smtp or (", ".join(alert.to) if alert.to else "")
    return f"{alert.kind} ({where})" if where else alert.kind


def _outside_deadman(config: ClusterConfig) -> tuple[list[str], list[str]]:
    """The deadman routes' labels: (pinging outside the cluster, pinging a host or VM of it).
    One inside is no outside watcher: it dies with what it should watch (shared_fate.py)."""
    outside: list[str] = []
    inside: list[str] = []
    for a in config.alerts:
        if a.kind == "deadman":
            (inside if address_owner(config, a.url or "") else outside).append(_route_label(a))
    return sorted(outside), sorted(inside)


def _deadman_text(config: ClusterConfig) -> str:
    deadman, inside = _outside_deadman(config)
    if deadman:
        return f"the deadman route {_names(deadman)} still notices the silence"
    if inside:
        return (f"the deadman route {_names(inside)} pings inside the cluster: nobody outside "
                f"notices (seed 001)")
    return "no deadman route: nobody outside the cluster notices (seed 001)"


def _route_vm(cluster: _Cluster, alert: Alert) -> str | None:
    """The VM of the cluster that an alert route's address names, if any."""
    endpoint = endpoint_host(alert.url or alert.smtp or "")
    return None if endpoint is None else vm_named_by(cluster.config, endpoint)


def _route_findings(cluster: _Cluster, outcome: _Outcome, out: _Findings) -> None:
    r = outcome.result
    moved = dict(r.moved)
    lost = set(r.lost_host_names)
    for alert in cluster.config.alerts:
        if alert.kind in ("deadman", "log"):
            continue
        vm = _route_vm(cluster, alert)
        if vm is None or cluster.start.get(vm) not in lost:
            continue
        label = _route_label(alert)
        if vm in moved:
            out.add("warning", "alert_path", r.failure,
                    f"alert route {label} goes through VM {vm}, which runs on lost host "
                    f"{cluster.start[vm]}: the alert about this failure waits until {vm} "
                    f"runs again on {moved[vm]}")
        else:
            out.add("warning", "alert_path", r.failure,
                    f"alert route {label} goes through VM {vm}, which runs on lost host "
                    f"{cluster.start[vm]} and finds no place: the route is dead; "
                    f"{_deadman_text(cluster.config)}")


def _alert_findings(config: ClusterConfig, out: _Findings) -> None:
    leaving = [a for a in config.alerts if a.kind != "log"]
    if not leaving:
        out.add("warning", "no_alerts", None,
                "no alert route leaves the cluster (alerts: is empty or only log): nobody is "
                "told of a failure; add an alert route and a deadman route")
        return
    deadman, inside = _outside_deadman(config)
    if inside and not deadman:
        return  # alerts/shared_fate.py warns that the deadman URL is inside the cluster
    if deadman:
        out.add("info", "deadman", None,
                f"outside watcher: {_names(deadman)} notices when the whole cluster goes "
                "silent")
    else:
        out.add("warning", "no_deadman", None,
                "no deadman route: when the failure takes the manager, or the VMs that carry "
                "the alerts, with it, nobody outside the cluster notices (seed 001); add "
                "{kind: deadman, url: ..., every: 1m} pinging a service outside the cluster")
