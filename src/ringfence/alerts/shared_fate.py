"""Shared fate of the alerting path, for `ringfence check` (seed 001: the hypervisor that
failed also ran the monitoring and the ticketing system, so nobody was told for a night).

`alerting_findings` returns findings as ``(severity, kind, failure, text)`` tuples, the
arguments of check's `_Findings.add`, all of kind ``alert_path``; check already finds a route
through a VM that a failure takes and a missing deadman route. This module adds:

* a ``deadman`` URL whose address is a host or a VM of the cluster: the outside watcher is not
  outside, and dies with the cluster it should notice;
* an alert route whose address is a host of the cluster (its name or an interface address):
  that host's failure takes the route with it;
* every alert route (two or more) going through one host (its VMs or the host itself): one
  failure silences them all;
* monitoring, alerting and ticketing VMs (by name: ``mon``, ``nagios``, ``zabbix``,
  ``prometheus``, ``grafana``, ``alert``, ``ticket``, ``helpdesk``, ``otrs``, ``jira``,
  ``phabricator`` …) that start on one host, or that no anti-affinity group keeps apart and so
  can end up on one host after a failure or a drain.

An address belongs to a host or VM when its host part equals, or its first label equals, the
host's or VM's name (case-insensitive), or equals a host's interface address or a VM's
``verify`` address. Pure; never raises for a validated configuration; deterministic order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from ringfence.alerts.models import Alert
from ringfence.config import ClusterConfig

__all__ = ["ALERTING_VM", "Finding", "address_owner", "alerting_findings", "endpoint_host",
           "vm_named_by"]

Finding = tuple[Literal["error", "warning", "info"], str, str | None, str]

ALERTING_VM = re.compile(
    r"mon|nagios|icinga|zabbix|prometheus|alertmanager|grafana|alert|ticket|helpdesk|otrs|"
    r"jira|phabricator|redmine|pager|oncall|support", re.IGNORECASE)
"""Names that mark a VM as part of the alerting path (monitoring, alerting, ticketing)."""


def endpoint_host(text: str) -> str | None:
    """The host name in a URL, ``HOST:PORT`` or a bare address; lower case; None if none."""
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _route_address(route: Alert) -> str:
    return route.url or route.smtp or ""


def _label(route: Alert) -> str:
    where = _route_address(route)
    return f"{route.kind} ({where})" if where else route.kind


def address_owner(config: ClusterConfig, address: str) -> tuple[str, str] | None:
    """``("host", name)`` or ``("vm", name)`` when `address` (a URL or host:port) points at a
    host or VM of the cluster; None when it points outside (as far as the file tells)."""
    endpoint = endpoint_host(address)
    if endpoint is None:
        return None
    first = endpoint.split(".", 1)[0]
    for host in sorted(config.hosts, key=lambda h: h.name):
        addresses = {i.address for i in host.interfaces.values() if i.address}
        if endpoint in (host.name.lower(),) or first == host.name.lower() or \
                endpoint in addresses:
            return ("host", host.name)
    vm = vm_named_by(config, endpoint)
    return ("vm", vm) if vm is not None else None


def vm_named_by(config: ClusterConfig, endpoint: str) -> str | None:
    """The VM that host name `endpoint` (from `endpoint_host`) names: by its name (or the
    first label of a DNS name), or by the address of its verify check."""
    first = endpoint.split(".", 1)[0]
    for vm in sorted(config.vms, key=lambda v: v.name):
        if endpoint == vm.name.lower() or first == vm.name.lower():
            return vm.name
        if vm.verify is not None:
            for check in (vm.verify.tcp, vm.verify.icmp):
                if check and endpoint_host(check) == endpoint:
                    return vm.name
    return None


def _owner_text(owner: tuple[str, str], start: Mapping[str, str | None]) -> str:
    kind, name = owner
    if kind == "host":
        return f"host {name}"
    where = start.get(name)
    return f"VM {name}" + (f" (on {where})" if where else "")


def _deadman_findings(config: ClusterConfig, start: Mapping[str, str | None]) -> list[Finding]:
    found: list[Finding] = []
    for route in config.alerts:
        if route.kind != "deadman":
            continue
        owner = address_owner(config, _route_address(route))
        if owner is not None:
            found.append((
                "warning", "alert_path", None,
                f"deadman route {_label(route)} pings {_owner_text(owner, start)} of this "
                "cluster: the watcher that should notice the cluster's silence dies with it "
                "(seed 001); ping a service outside the cluster (a healthchecks-style URL, or "
                "an Alertmanager that runs elsewhere)"))
    return found


def _route_findings(config: ClusterConfig, start: Mapping[str, str | None]) -> list[Finding]:
    found: list[Finding] = []
    through: dict[str, list[str]] = {}  # host -> routes that go through it
    outside = False
    routes = [r for r in config.alerts if r.kind not in ("deadman", "log")]
    for route in routes:
        owner = address_owner(config, _route_address(route))
        if owner is None:
            outside = True
            continue
        host = owner[1] if owner[0] == "host" else start.get(owner[1])
        if host is None:
            outside = True  # a VM that never starts: check's placement finding covers it
            continue
        through.setdefault(host, []).append(_label(route))
        if owner[0] == "host":
            found.append((
                "warning", "alert_path", f"host {host}",
                f"alert route {_label(route)} goes to host {host} itself: when {host} "
                "fails, the alert about it has nowhere to go; deliver to a receiver outside "
                "the cluster"))
    if len(routes) > 1 and not outside and len(through) == 1:  # one: check says it
        host, labels = next(iter(through.items()))
        found.append((
            "warning", "alert_path", f"host {host}",
            f"every alert route goes through host {host} ({', '.join(sorted(labels))}): its "
            "failure silences all of them at once; add a route whose receiver runs outside "
            "the cluster"))
    return found


def _separated(config: ClusterConfig, a: str, b: str) -> bool:
    return any(g.rule == "anti_affinity" and a in g.vms and b in g.vms for g in config.groups)


def _monitoring_findings(config: ClusterConfig, start: Mapping[str, str | None]) -> list[Finding]:
    watchers = sorted(vm.name for vm in config.vms if ALERTING_VM.search(vm.name))
    if len(watchers) < 2:
        return []
    found: list[Finding] = []
    by_host: dict[str, list[str]] = {}
    for vm in watchers:
        where = start.get(vm)
        if where is not None:
            by_host.setdefault(where, []).append(vm)
    together: set[str] = set()
    for host, vms in sorted(by_host.items()):
        if len(vms) > 1:
            together.update(vms)
            group = f"{{name: watchers, rule: anti_affinity, vms: [{', '.join(vms)}]}}"
            found.append((
                "warning", "alert_path", f"host {host}",
                f"monitoring, alerting and ticketing VMs {', '.join(vms)} all run on {host}: "
                f"when {host} fails nothing watches, nothing alerts and nobody can open a "
                "ticket until they restart (seed 001); keep them apart with an anti-affinity "
                f"group (groups: [{group}]) and run one outside the cluster"))
    apart = [(a, b) for i, a in enumerate(watchers) for b in watchers[i + 1:]
             if not _separated(config, a, b) and not (a in together and b in together)]
    if apart:
        pairs = ", ".join(f"{a}+{b}" for a, b in apart[:8]) + (
            f", … ({len(apart) - 8} more)" if len(apart) > 8 else "")
        found.append((
            "warning", "alert_path", None,
            f"monitoring, alerting and ticketing VMs that no anti-affinity group keeps apart "
            f"can end up on one host after a failure or a drain: {pairs} (seed 001); put them "
            f"in one anti-affinity group (vms: [{', '.join(watchers)}])"))
    return found


def alerting_findings(config: ClusterConfig, start: Mapping[str, str | None]) -> list[Finding]:
    """The alerting path's shared fate (see the module docstring); `start` is the starting
    placement (VM -> host, None: no place) that check computed."""
    return [*_deadman_findings(config, start), *_route_findings(config, start),
            *_monitoring_findings(config, start)]
