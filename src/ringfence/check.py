"""`ringfence check`: validate a cluster file, then look for shared fate before it bites.

:func:`analyse` takes a validated :class:`~ringfence.config.ClusterConfig` and answers, for every
single failure, what would happen to the cluster's VMs, anti-affinity groups, store quorum and
alert routes; it adds static checks of timing, quorum design, heartbeat redundancy, fencing and
``policy.host_failures_to_tolerate``. :func:`render_text` and :func:`to_json` present the
:class:`CheckReport`; :func:`run_check` is the command (load, analyse, print, exit code).

The model of a failure (the same connectivity rules as the simulator):

* Failures analysed, one at a time: every host (powered off: its VMs die, its store member with
  it); every network (lost on every host and witness at once); every witness (down, and with it
  its store member); every store member that runs on a host (the store process dies, the host
  and its VMs keep running). A witness's store member fails only with the witness, so it is not
  listed twice.
* Two endpoints (hosts or witnesses) talk while they share a network that the failure did not
  take. The store keeps quorum while a majority of ``config.store_members()`` are up and all talk
  to each other; a host reaches the store while it talks to every member of such a majority.
* A host counts as *lost* when it fails, when it is left on no heartbeat network (one of two
  peers can not tell a lost link from a lost host: seed 002; with a single host there are no
  peers and the rule does not apply), or when it reaches no store majority (its agent stops its
  VMs and self-fences once its lease is older than ``host_lease_ttl - safety_margin``). The
  other hosts *survive* and may receive VMs.
* Starting placement: VMs with ``host:`` run there; the others are placed first on the whole
  cluster with :func:`ringfence.core.placement.plan`. After a failure the VMs of lost hosts are
  placed again with ``plan`` on the survivors, whose free room is their CPUs and memory minus
  the VMs already on them. ``plan`` never overcommits and never puts two members of an
  anti-affinity group on one host: a VM that fits nowhere has *no place* and stays down.
* An anti-affinity group is *broken* by a failure when some of its members had to move and they
  can not all run on distinct hosts afterwards (a group of N needs N distinct surviving hosts
  with room). It is *down together* when every member ran on a lost host.
* Alert routes: ``deadman`` is an outside watcher (it notices the cluster's silence); ``log``
  never leaves the cluster; the others are sent by the cluster's manager, so they need a
  surviving host, and a route whose address names a VM of the cluster (its name, the first label
  of its host name, or the VM's ``verify`` address) goes through that VM and is down while that
  VM is (seed 001: the ticketing system ran on the hypervisor that failed).

Severities: ``error`` when a single failure (or the starting placement) leaves a VM without a
place, breaks an anti-affinity group, or leaves no host running (store quorum lost for the whole
cluster, or every host lost otherwise); ``warning`` for shared fate that degrades recovery or
alerting, and for risky design (two nodes without a witness, an even number of store members,
one heartbeat network, tight timers, ``host_failures_to_tolerate`` not met); ``info`` for
figures worth knowing (timing margins, the watchdog-only recovery time, fence paths).
:attr:`CheckReport.exit_code` is 1 when there is any error, else 0.

Errors: :func:`analyse`, :func:`render_text` and :func:`to_json` do not raise for a validated
configuration. :func:`run_check` lets :class:`ringfence.errors.ConfigError` propagate (the file
can not be read, parsed or validated; the command line turns it into exit code 2).

Everything is deterministic: failures, hosts, VMs, groups and findings are reported in sorted
order, and the same file always gives the same report, byte for byte.
"""

from __future__ import annotations

import itertools
import math
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ringfence.config import VM, Alert, ClusterConfig, Group, parse_cluster, read_yaml
from ringfence.core.leases import watchdog_wait
from ringfence.core.placement import HostRoom, plan
from ringfence.units import format_duration, format_size

__all__ = [
    "CheckReport",
    "FailureKind",
    "FailureResult",
    "Finding",
    "LostHost",
    "Severity",
    "UnplacedVM",
    "analyse",
    "load_any",
    "render_text",
    "run_check",
    "to_json",
]

Severity = Literal["error", "warning", "info"]
FailureKind = Literal["host", "network", "witness", "store_member"]

_SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
_KIND_ORDER: dict[str, int] = {
    "quorum_lost": 0, "cluster_lost": 1, "vm_without_place": 2, "group_broken": 3,
    "host_lost": 4,
}
_COMBINATION_LIMIT = 2000
"""``host_failures_to_tolerate`` >= 2 is checked exactly (every combination of that many
hosts) up to this many combinations, and by total capacity beyond."""

_TEXT_WIDTH = 100
_NO_MAJORITY = "reaches no store majority"


# ------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Finding:
    """One thing the check found. ``failure`` names the single failure it is about
    (``"host hv1"``), or is None for the starting state and static checks."""

    severity: Severity
    kind: str
    failure: str | None
    text: str


@dataclass(frozen=True)
class LostHost:
    """A host that can not run VMs after a failure, and why."""

    host: str
    why: str


@dataclass(frozen=True)
class UnplacedVM:
    """A VM that has no place to run, and what was missing (from the placement)."""

    vm: str
    reason: str


@dataclass(frozen=True)
class FailureResult:
    """What one single failure does to the cluster."""

    failure: str
    kind: FailureKind
    target: str
    lost_hosts: tuple[LostHost, ...]
    survivors: tuple[str, ...]
    moved: tuple[tuple[str, str], ...]
    """(VM, new host) for every VM of a lost host that finds a place."""
    vms_without_place: tuple[UnplacedVM, ...]
    groups_broken: tuple[str, ...]
    groups_down: tuple[str, ...]
    """Groups (anti-affinity, or named like a monitoring group) whose members all ran on lost
    hosts: all of them are down at once until restarted."""
    quorum: bool

    @property
    def lost_host_names(self) -> tuple[str, ...]:
        return tuple(lost.host for lost in self.lost_hosts)


@dataclass(frozen=True)
class CheckReport:
    """The result of :func:`analyse`."""

    cluster: str
    hosts: int
    witnesses: int
    networks: int
    vms: int
    store_members: tuple[str, ...]
    placement: tuple[tuple[str, str | None], ...]
    """Starting placement: (VM, host), None for a VM that fits nowhere, sorted by VM."""
    failures: tuple[FailureResult, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def infos(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "info")

    @property
    def ok(self) -> bool:
        """No error: no single failure leaves a VM without a place or breaks a group."""
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


# ------------------------------------------------------------------------------------- helpers


def _dur(seconds: float) -> str:
    """A duration for humans, rounded to the millisecond, with a sign when negative."""
    rounded = round(abs(seconds), 3)
    text = format_duration(rounded)
    return f"-{text}" if seconds < 0 and rounded > 0 else text


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _is_monitoring(group: Group) -> bool:
    return "monitor" in group.name.lower()


def _endpoint_host(text: str) -> str | None:
    """The host name in a URL, ``HOST:PORT`` or a bare address; lower case; None if none."""
    if not text:
        return None
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    return host.lower() if host else None


def _route_label(alert: Alert) -> str:
    where = alert.url or alert.smtp or (", ".join(alert.to) if alert.to else "")
    return f"{alert.kind} ({where})" if where else alert.kind


class _Cluster:
    """Lookup tables for one analysis, built once from the configuration."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.host_names: list[str] = sorted(h.name for h in config.hosts)
        self.witness_names: list[str] = sorted(w.name for w in config.witnesses)
        self.network_names: list[str] = sorted(config.network_list())
        self.heartbeat: frozenset[str] = frozenset(config.heartbeat_networks())
        self.nets: dict[str, frozenset[str]] = {
            name: frozenset(config.host_networks(name)) for name in config.node_names()
        }
        self.members: list[str] = sorted(config.store_members())
        self.vm_by_name: dict[str, VM] = {vm.name: vm for vm in config.vms}
        self.anti_groups: list[Group] = sorted(
            (g for g in config.groups if g.rule == "anti_affinity"), key=lambda g: g.name
        )
        self.watched_groups: list[Group] = sorted(
            (g for g in config.groups if g.rule == "anti_affinity" or _is_monitoring(g)),
            key=lambda g: g.name,
        )
        self.start: dict[str, str | None] = {}
        self.start_reasons: dict[str, str] = {}
        self._place_at_start()

    def _place_at_start(self) -> None:
        rooms = {h.name: HostRoom(h.name, h.cpus, h.memory) for h in self.config.hosts}
        loose: list[VM] = []
        for vm in sorted(self.config.vms, key=lambda v: v.name):
            room = rooms.get(vm.host) if vm.host is not None else None
            if room is None:
                loose.append(vm)
                continue
            room.free_cpus -= vm.cpus
            room.free_memory -= vm.memory
            room.vms.add(vm.name)
            self.start[vm.name] = room.name
        placement = plan(loose, rooms, self.config.groups)
        for vm in loose:
            self.start[vm.name] = placement.assignments.get(vm.name)
            if vm.name in placement.reasons:
                self.start_reasons[vm.name] = placement.reasons[vm.name]
        self.start_rooms: dict[str, HostRoom] = rooms
        self.on_host: dict[str, list[str]] = {name: [] for name in self.host_names}
        for vm_name in sorted(self.start):
            where = self.start[vm_name]
            if where is not None:
                self.on_host[where].append(vm_name)

    def vms_on(self, host: str) -> list[str]:
        """The VMs that run on *host* at the start, sorted."""
        return self.on_host[host]

    def room_of(self, host: str) -> HostRoom:
        """A fresh copy of *host*'s room at the start."""
        room = self.start_rooms[host]
        return HostRoom(room.name, room.free_cpus, room.free_memory, set(room.vms))

    # ---------------------------------------------------------------- connectivity
    def talk(self, a: str, b: str, networks: frozenset[str]) -> bool:
        if a == b:
            return True
        return bool(self.nets[a] & self.nets[b] & networks)

    def quorum_cliques(
        self, up_members: Sequence[str], networks: frozenset[str]
    ) -> list[tuple[str, ...]]:
        """The largest sets of up store members that talk to each other, if they are a
        majority of all members (the same rule as the simulator)."""
        need = len(self.members) // 2 + 1
        if len(up_members) < need:
            return []
        if len(up_members) <= 12:
            for size in range(len(up_members), need - 1, -1):
                found = [
                    combo
                    for combo in itertools.combinations(up_members, size)
                    if all(self.talk(a, b, networks) for a, b in itertools.combinations(combo, 2))
                ]
                if found:
                    return found
            return []
        cliques: list[tuple[str, ...]] = []
        for network in sorted(networks):
            on = tuple(m for m in up_members if network in self.nets[m])
            if len(on) >= need and on not in cliques:
                cliques.append(on)
        return cliques

    def reaches(
        self, host: str, clique: tuple[str, ...], common: frozenset[str],
        networks: frozenset[str],
    ) -> bool:
        """Does *host* talk to every member of *clique* (whose members all share the
        networks *common*)?"""
        if self.nets[host] & common:
            return True
        return all(self.talk(host, member, networks) for member in clique)

    def common_networks(self, clique: tuple[str, ...], networks: frozenset[str]
                        ) -> frozenset[str]:
        common = networks
        for member in clique:
            common = common & self.nets[member]
        return common


@dataclass(frozen=True)
class _Outcome:
    result: FailureResult
    start: Mapping[str, str | None]
    placed: Mapping[str, str | None]
    """Where each VM of a lost host runs after the failure (None: nowhere)."""

    def where(self, vm: str) -> str | None:
        """Where *vm* runs after the failure (None: nowhere)."""
        return self.placed[vm] if vm in self.placed else self.start.get(vm)


def _simulate(
    cluster: _Cluster,
    *,
    failure: str,
    kind: FailureKind,
    target: str,
    down: frozenset[str] = frozenset(),
    members_down: frozenset[str] = frozenset(),
    lost_network: str | None = None,
) -> _Outcome:
    """What happens when the endpoints *down* fail, the store members *members_down* fail
    (besides those of *down*), and *lost_network* is lost everywhere."""
    networks = frozenset(n for n in cluster.network_names if n != lost_network)
    up_members = [m for m in cluster.members if m not in down and m not in members_down]
    cliques = [
        (clique, cluster.common_networks(clique, networks))
        for clique in cluster.quorum_cliques(up_members, networks)
    ]
    several_hosts = len(cluster.host_names) > 1
    lost: list[LostHost] = []
    survivors: list[str] = []
    quorum = False
    for host in cluster.host_names:
        if host in down:
            lost.append(LostHost(host, "fails"))
            continue
        reaches = any(
            cluster.reaches(host, clique, common, networks) for clique, common in cliques
        )
        quorum = quorum or reaches
        if several_hosts and not (cluster.nets[host] & cluster.heartbeat & networks):
            lost.append(LostHost(host, "is left on no heartbeat network"))
        elif not reaches:
            lost.append(LostHost(host, _NO_MAJORITY))
        else:
            survivors.append(host)
    rooms = {name: cluster.room_of(name) for name in survivors}
    displaced = [
        cluster.vm_by_name[vm_name] for entry in lost for vm_name in cluster.vms_on(entry.host)
    ]
    placement = plan(displaced, rooms, cluster.config.groups)
    moved: list[tuple[str, str]] = []
    unplaced: list[UnplacedVM] = []
    final: dict[str, str | None] = {}
    for vm in displaced:
        target_host = placement.assignments.get(vm.name)
        final[vm.name] = target_host
        if target_host is None:
            reason = placement.reasons.get(vm.name, "no host survives")
            if not survivors:
                reason = "no host survives"
            unplaced.append(UnplacedVM(vm.name, reason))
        else:
            moved.append((vm.name, target_host))
    displaced_names = {vm.name for vm in displaced}
    broken: list[str] = []
    for group in cluster.anti_groups:
        if not any(m in displaced_names for m in group.vms):
            continue
        hosts = [final[m] if m in final else cluster.start.get(m) for m in group.vms]
        placed = [h for h in hosts if h is not None]
        if len(placed) < len(hosts) or len(set(placed)) < len(placed):
            broken.append(group.name)
    down_together = [
        g.name for g in cluster.watched_groups if all(m in displaced_names for m in g.vms)
    ]
    result = FailureResult(
        failure=failure,
        kind=kind,
        target=target,
        lost_hosts=tuple(sorted(lost, key=lambda entry: entry.host)),
        survivors=tuple(survivors),
        moved=tuple(sorted(moved)),
        vms_without_place=tuple(sorted(unplaced, key=lambda u: u.vm)),
        groups_broken=tuple(sorted(broken)),
        groups_down=tuple(sorted(down_together)),
        quorum=quorum,
    )
    return _Outcome(result, cluster.start, final)


# ------------------------------------------------------------------------------------ analysis


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, severity: Severity, kind: str, failure: str | None, text: str) -> None:
        self.items.append(Finding(severity, kind, failure, text))


def _single_failures(cluster: _Cluster) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    for host in cluster.host_names:
        outcomes.append(_simulate(cluster, failure=f"host {host}", kind="host", target=host,
                                  down=frozenset({host})))
    for network in cluster.network_names:
        outcomes.append(_simulate(cluster, failure=f"network {network}", kind="network",
                                  target=network, lost_network=network))
    for witness in cluster.witness_names:
        outcomes.append(_simulate(cluster, failure=f"witness {witness}", kind="witness",
                                  target=witness, down=frozenset({witness})))
    hosts = set(cluster.host_names)
    for member in sorted(m for m in cluster.members if m in hosts):
        outcomes.append(_simulate(cluster, failure=f"store member {member}",
                                  kind="store_member", target=member,
                                  members_down=frozenset({member})))
    return outcomes


def _deadman_text(config: ClusterConfig) -> str:
    deadman = sorted(_route_label(a) for a in config.alerts if a.kind == "deadman")
    if deadman:
        return f"the deadman route {_names(deadman)} still notices the silence"
    return "no deadman route: nobody outside the cluster notices (seed 001)"


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


def _route_vm(cluster: _Cluster, alert: Alert) -> str | None:
    """The VM of the cluster that an alert route's address names, if any."""
    endpoint = _endpoint_host(alert.url or alert.smtp or "")
    if endpoint is None:
        return None
    first_label = endpoint.split(".", 1)[0]
    for vm in sorted(cluster.config.vms, key=lambda v: v.name):
        name = vm.name.lower()
        if endpoint == name or first_label == name:
            return vm.name
        verify = vm.verify
        if verify is not None:
            for address in (verify.tcp, verify.icmp):
                if address and _endpoint_host(address) == endpoint:
                    return vm.name
    return None


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


def _watchdog_recovery(config: ClusterConfig) -> float:
    return config.timing.host_lease_ttl + watchdog_wait(config.timing)


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


def _timing_findings(config: ClusterConfig, out: _Findings) -> None:
    t = config.timing
    ttl, wd, sm = t.host_lease_ttl, t.watchdog_timeout, t.safety_margin
    out.add("info", "timing_watchdog", None,
            f"watchdog_timeout ({_dur(wd)}) is {_dur(ttl - wd)} shorter than host_lease_ttl "
            f"({_dur(ttl)})")
    # After its last renewal a cut-off host stops its VMs at ttl - sm and, if hung instead,
    # is reset by its watchdog at most ttl - sm + wd later; the store drops the lease no
    # earlier than ttl, and the manager waits wd + clock_margin more before moving anything.
    reset_by = ttl - sm + wd
    moved_from = ttl + watchdog_wait(t)
    out.add("info", "timing_headroom", None,
            f"after its last renewal, a host cut off from the store stops its VMs at "
            f"{_dur(ttl - sm)} (host_lease_ttl - safety_margin) and, if it hangs instead, its "
            f"watchdog resets it by {_dur(reset_by)}; its VMs move no earlier than "
            f"{_dur(moved_from)} (host_lease_ttl + watchdog_timeout + clock_margin): "
            f"{_dur(moved_from - reset_by)} of margin (safety_margin + clock_margin)")
    interval, timeout = t.heartbeat_interval, t.effective_heartbeat_timeout
    if 3 * interval > timeout + 1e-9:
        out.add("warning", "timing_heartbeat", None,
                f"the heartbeat timeout ({_dur(timeout)}) is shorter than three heartbeat "
                f"intervals ({_dur(3 * interval)}): two late or lost datagrams in a row mark a "
                f"link down, so a lossy link flaps; set heartbeat_timeout to "
                f"{_dur(3 * interval)} or more")
    else:
        out.add("info", "timing_heartbeat", None,
                f"a silent link is noticed after {_dur(timeout)} "
                f"({timeout / interval:g} heartbeat intervals of {_dur(interval)})")


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


def _alert_findings(config: ClusterConfig, out: _Findings) -> None:
    leaving = [a for a in config.alerts if a.kind != "log"]
    if not leaving:
        out.add("warning", "no_alerts", None,
                "no alert route leaves the cluster (alerts: is empty or only log): nobody is "
                "told of a failure; add an alert route and a deadman route")
        return
    deadman = sorted(_route_label(a) for a in config.alerts if a.kind == "deadman")
    if deadman:
        out.add("info", "deadman", None,
                f"outside watcher: {_names(deadman)} notices when the whole cluster goes "
                "silent")
    else:
        out.add("warning", "no_deadman", None,
                "no deadman route: when the failure takes the manager, or the VMs that carry "
                "the alerts, with it, nobody outside the cluster notices (seed 001); add "
                "{kind: deadman, url: ..., every: 1m} pinging a service outside the cluster")


def _outcome_trouble(outcome: _Outcome) -> str:
    r = outcome.result
    parts: list[str] = []
    if not r.survivors:
        quorum_lost = any(lost.why == _NO_MAJORITY for lost in r.lost_hosts)
        parts.append("the store loses quorum" if quorum_lost else "no host survives")
    elif r.vms_without_place:
        parts.append(f"no place for {_names(u.vm for u in r.vms_without_place)}")
    if r.survivors and r.groups_broken:
        parts.append(f"broken groups {_names(r.groups_broken)}")
    return "; ".join(parts)


def _policy_findings(cluster: _Cluster, singles: Sequence[_Outcome], out: _Findings) -> None:
    config = cluster.config
    k = config.policy.host_failures_to_tolerate
    if k == 0:
        return
    hosts = cluster.host_names
    field = f"policy.host_failures_to_tolerate ({k})"
    if k >= len(hosts):
        out.add("warning", "policy", None,
                f"{field} can not be met: the cluster has {_plural(len(hosts), 'host')}")
        return
    if k == 1:
        failing = [o for o in singles if o.result.kind == "host" and _outcome_trouble(o)]
        if failing:
            listing = "; ".join(f"{o.result.target}: {_outcome_trouble(o)}" for o in failing)
            out.add("warning", "policy", None, f"{field} is not met: {listing}")
        return
    count = math.comb(len(hosts), k)
    if count <= _COMBINATION_LIMIT:
        failing_combos: list[str] = []
        for combo in itertools.combinations(hosts, k):
            outcome = _simulate(cluster, failure=f"hosts {', '.join(combo)}", kind="host",
                                target=", ".join(combo), down=frozenset(combo))
            trouble = _outcome_trouble(outcome)
            if trouble:
                failing_combos.append(f"{' + '.join(combo)}: {trouble}")
        if failing_combos:
            shown = "; ".join(failing_combos[:5])
            more = len(failing_combos) - 5
            out.add("warning", "policy", None,
                    f"{field} is not met for {len(failing_combos)} of {count} combinations "
                    f"of {k} failed hosts: {shown}" + (f"; and {more} more" if more > 0 else ""))
        return
    _policy_by_capacity(cluster, k, field, out)


def _policy_by_capacity(cluster: _Cluster, k: int, field: str, out: _Findings) -> None:
    """Too many combinations to try: the total room left after losing the k largest hosts
    must hold every VM (a necessary condition, checked per resource)."""
    specs = [cluster.config.host(h) for h in cluster.host_names]
    cpus_needed = sum(vm.cpus for vm in cluster.config.vms)
    memory_needed = sum(vm.memory for vm in cluster.config.vms)
    cpus_left = sum(sorted(h.cpus for h in specs)[:-k])
    memory_left = sum(sorted(h.memory for h in specs)[:-k])
    short: list[str] = []
    if cpus_left < cpus_needed:
        short.append(f"{cpus_needed} CPUs needed, {cpus_left} left")
    if memory_left < memory_needed:
        short.append(f"{format_size(memory_needed)} of memory needed, "
                     f"{format_size(memory_left)} left")
    if short:
        out.add("warning", "policy", None,
                f"{field} is not met: after losing the {k} largest hosts, {'; '.join(short)}")
    else:
        out.add("info", "policy", None,
                f"{field}: the room left after losing the {k} largest hosts holds every VM "
                f"(checked by total capacity; {math.comb(len(specs), k)} combinations are too "
                "many to place one by one)")


def analyse(config: ClusterConfig) -> CheckReport:
    """Analyse a validated cluster for shared fate; see the module docstring for the model."""
    cluster = _Cluster(config)
    out = _Findings()
    _start_findings(cluster, out)
    singles = _single_failures(cluster)
    for outcome in singles:
        _failure_findings(cluster, outcome, out)
    _design_findings(cluster, out)
    _timing_findings(config, out)
    _alert_findings(config, out)
    from ringfence.alerts.shared_fate import alerting_findings  # the alerting path's fate
    for finding in alerting_findings(config, cluster.start):
        out.add(*finding)
    _policy_findings(cluster, singles, out)
    failure_rank = {o.result.failure: i for i, o in enumerate(singles)}

    def order(finding: Finding) -> tuple[int, int, int, str, str]:
        rank = -1 if finding.failure is None else failure_rank.get(finding.failure, -1)
        kind = _KIND_ORDER.get(finding.kind, len(_KIND_ORDER))
        return (_SEVERITY_ORDER[finding.severity], rank, kind, finding.kind, finding.text)

    return CheckReport(
        cluster=config.name,
        hosts=len(config.hosts),
        witnesses=len(config.witnesses),
        networks=len(config.networks),
        vms=len(config.vms),
        store_members=tuple(cluster.members),
        placement=tuple(sorted(cluster.start.items())),
        failures=tuple(o.result for o in singles),
        findings=tuple(sorted(out.items, key=order)),
    )


# ------------------------------------------------------------------------------------ rendering


def _cell(values: Sequence[str], limit: int = 32) -> str:
    if not values:
        return "-"
    text = ", ".join(values)
    if len(text) <= limit:
        return text
    shown: list[str] = []
    for value in values:
        candidate = ", ".join([*shown, value])
        if len(candidate) + 8 > limit:
            break
        shown.append(value)
    return ", ".join(shown) + f", … (+{len(values) - len(shown)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def render_text(report: CheckReport) -> str:
    """The report as plain text: a table of single failures, then the findings."""
    lines = [
        f"ringfence check: cluster {report.cluster}: {_plural(report.hosts, 'host')}, "
        f"{_plural(report.witnesses, 'witness', 'witnesses')}, "
        f"{_plural(report.networks, 'network')}, {_plural(report.vms, 'VM')}, "
        f"{_plural(len(report.store_members), 'store member')}",
        "",
        "Single failures:",
    ]
    rows = [
        [
            r.failure,
            _cell(r.lost_host_names),
            str(len(r.moved)),
            _cell([u.vm for u in r.vms_without_place]),
            _cell(r.groups_broken),
            "yes" if r.quorum else "LOST",
        ]
        for r in report.failures
    ]
    lines += _table(
        ["FAILURE", "LOST HOSTS", "VMS MOVED", "VMS WITHOUT A PLACE", "GROUPS BROKEN", "QUORUM"],
        rows,
    )
    lines += ["", "Findings:"]
    if not report.findings:
        lines.append("  none")
    for finding in report.findings:
        head = f"  {finding.severity.upper():<8} {finding.failure or 'cluster'}: "
        lines += textwrap.wrap(
            finding.text,
            width=_TEXT_WIDTH,
            initial_indent=head,
            subsequent_indent=" " * 11,
            break_long_words=False,
            break_on_hyphens=False,
        )
    counts = (
        f"{_plural(len(report.errors), 'error')}, {_plural(len(report.warnings), 'warning')}, "
        f"{_plural(len(report.infos), 'note')}"
    )
    verdict = "OK" if report.ok else "FAILED: a single failure leaves VMs without a place"
    if not report.ok and not any(
        f.kind in ("vm_without_place", "quorum_lost", "cluster_lost") for f in report.errors
    ):
        verdict = "FAILED: a single failure breaks an anti-affinity group"
    lines += ["", f"Result: {verdict} ({counts})"]
    return "\n".join(lines) + "\n"


def to_json(report: CheckReport) -> dict[str, Any]:
    """The report as JSON-ready data (the shape of ``ringfence check --json``)."""
    return {
        "cluster": report.cluster,
        "ok": report.ok,
        "findings": [
            {"severity": f.severity, "kind": f.kind, "failure": f.failure, "text": f.text}
            for f in report.findings
        ],
        "failures": [
            {
                "failure": r.failure,
                "kind": r.kind,
                "target": r.target,
                "lost_hosts": list(r.lost_host_names),
                "lost_why": {lost.host: lost.why for lost in r.lost_hosts},
                "moved": dict(r.moved),
                "vms_without_place": [u.vm for u in r.vms_without_place],
                "reasons": {u.vm: u.reason for u in r.vms_without_place},
                "groups_broken": list(r.groups_broken),
                "groups_down": list(r.groups_down),
                "quorum": r.quorum,
            }
            for r in report.failures
        ],
        "placement": dict(report.placement),
        "store_members": list(report.store_members),
    }


# -------------------------------------------------------------------------------------- command


def load_any(path: str | Path) -> ClusterConfig:
    """The cluster of *path*: a scenario file (top level has ``cluster:``) or a cluster file.

    Raises :class:`ringfence.errors.ConfigError` naming the file, line and field."""
    data, lines = read_yaml(path)
    if isinstance(data, dict) and "cluster" in data:
        from ringfence.sim.scenario import parse_scenario

        return parse_scenario(data, file=str(path), lines=lines).cluster
    return parse_cluster(data, file=str(path), lines=lines)


def run_check(path: str, *, as_json: bool) -> int:
    """``ringfence check PATH [--json]``: print the report, return the exit code (0 or 1).

    :class:`ringfence.errors.ConfigError` propagates for a file that is not valid."""
    import json

    report = analyse(load_any(path))
    if as_json:
        sys.stdout.write(json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return report.exit_code
