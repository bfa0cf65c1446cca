"""The model of one failure: who still talks to whom, where the store keeps its
majority, which hosts are lost and where their VMs go.

``_Cluster`` holds the lookup tables of one analysis and the starting placement;
``_simulate`` answers what one failure (hosts or witnesses down, store members down, a
network lost) does, as a :class:`~ringfence.check.results.FailureResult`;
``_single_failures`` runs it for every single failure, in report order. The rules are those
listed in the docstring of :mod:`ringfence.check` (the same connectivity rules as the
simulator). Nothing here raises for a validated configuration.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ringfence.check.results import FailureKind, FailureResult, LostHost, UnplacedVM
from ringfence.config import VM, ClusterConfig, Group
from ringfence.core.placement import HostRoom, plan

_NO_MAJORITY = "reaches no store majority"


def _is_monitoring(group: Group) -> bool:
    return "monitor" in group.name.lower()


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
