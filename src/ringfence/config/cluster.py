"""The whole cluster file (:class:`ClusterConfig`) and the checks between its sections.

Its ``model_validator`` checks references between sections: unique names, reserved names,
unknown networks, hosts, VMs and datastores, hosts without a heartbeat network, duplicate
addresses and MACs, and VMs that do not fit the host they start on. Every problem is collected
and raised at once as :class:`~ringfence.config.problems.FieldProblems`, each at the field path
it is about. The lookup methods (:meth:`ClusterConfig.host`, ...) raise :class:`KeyError` with
an :func:`~ringfence.config.problems.unknown_name` message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Self, TypeVar

from pydantic import Field, PrivateAttr, model_validator

from ringfence.alerts.models import Alert
from ringfence.alerts.monitors import MAX_MONITORS, Monitor
from ringfence.config.fields import (
    MAX_ALERTS,
    MAX_DATASTORES,
    MAX_GROUPS,
    MAX_HOSTS,
    MAX_NETWORKS,
    MAX_VMS,
    MAX_WITNESSES,
    FilePath,
    Name,
    _Model,
)
from ringfence.config.nodes import Host, Network, Witness
from ringfence.config.problems import FieldProblems, Loc, format_path, unknown_name
from ringfence.config.services import ApiConfig, FenceConfig, StoreConfig
from ringfence.config.timing import Timing
from ringfence.config.vms import VM, Datastore, Group, Policy
from ringfence.units import format_size

_T = TypeVar("_T", Host, VM, Network, Witness)


class ClusterConfig(_Model):
    """A whole cluster; the ``cluster:`` section of a scenario file has the same schema."""

    name: Name = "cluster"
    key_file: FilePath | None = None
    timing: Timing = Field(default_factory=Timing)
    networks: list[Network] = Field(max_length=MAX_NETWORKS)
    hosts: list[Host] = Field(min_length=1, max_length=MAX_HOSTS)
    witnesses: list[Witness] = Field(default_factory=list, max_length=MAX_WITNESSES)
    store: StoreConfig = Field(default_factory=StoreConfig)
    fencing: dict[str, FenceConfig] = Field(default_factory=dict, max_length=MAX_HOSTS)
    datastores: list[Datastore] = Field(default_factory=list, max_length=MAX_DATASTORES)
    groups: list[Group] = Field(default_factory=list, max_length=MAX_GROUPS)
    vms: list[VM] = Field(default_factory=list, max_length=MAX_VMS)
    policy: Policy = Field(default_factory=Policy)
    alerts: list[Alert] = Field(default_factory=list, max_length=MAX_ALERTS)
    monitors: list[Monitor] = Field(default_factory=list, max_length=MAX_MONITORS)
    api: ApiConfig | None = None

    # Lookup tables, built on first use. Each remembers the list it indexes, so that a
    # model_copy(update=...) that replaces the list never sees a stale table.
    _index: dict[str, tuple[list[Any], dict[str, Any]]] = PrivateAttr(default_factory=dict)

    def _lookup(self, attribute: str, items: list[_T], name: str, kind: str) -> _T:
        cached = self._index.get(attribute)
        if cached is None or cached[0] is not items:
            cached = (items, {item.name: item for item in items})
            self._index[attribute] = cached
        table: dict[str, _T] = cached[1]
        try:
            return table[name]
        except KeyError:
            raise KeyError(unknown_name(kind, name, [item.name for item in items])) from None

    def host(self, name: str) -> Host:
        """The host called *name*; :class:`KeyError` if there is none."""
        return self._lookup("hosts", self.hosts, name, "host")

    def witness(self, name: str) -> Witness:
        """The witness called *name*; :class:`KeyError` if there is none."""
        return self._lookup("witnesses", self.witnesses, name, "witness")

    def vm(self, name: str) -> VM:
        """The VM called *name*; :class:`KeyError` if there is none."""
        return self._lookup("vms", self.vms, name, "VM")

    def network(self, name: str) -> Network:
        """The network called *name*; :class:`KeyError` if there is none."""
        return self._lookup("networks", self.networks, name, "network")

    def network_list(self) -> list[str]:
        """Names of all networks, in file order."""
        return [network.name for network in self.networks]

    def heartbeat_networks(self) -> list[str]:
        """Names of the networks with role ``heartbeat``, in file order."""
        return [network.name for network in self.networks if "heartbeat" in network.role]

    def store_members(self) -> list[str]:
        """Store members: ``store.members``, or every host and then every witness."""
        if self.store.members:
            return list(self.store.members)
        return [host.name for host in self.hosts] + [w.name for w in self.witnesses]

    def host_networks(self, name: str) -> list[str]:
        """Networks that the host or witness called *name* is on."""
        all_networks = self.network_list()
        for host in self.hosts:
            if host.name == name:
                return host.network_names(all_networks)
        for witness in self.witnesses:
            if witness.name == name:
                return witness.network_names(all_networks)
        raise KeyError(
            unknown_name("host or witness", name, self.node_names(), "hosts and witnesses")
        )

    def node_names(self) -> list[str]:
        """Names of every host and then every witness, in file order."""
        return [host.name for host in self.hosts] + [w.name for w in self.witnesses]

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems: list[tuple[Loc, str]] = []

        def add(loc: Loc, message: str) -> None:
            problems.append((loc, message))

        self._check_unique(add)
        self._check_networks(add)
        self._check_references(add)
        self._check_capacity(add)
        self._check_alerting(add)
        if problems:
            raise FieldProblems(problems)
        return self

    def _check_alerting(self, add: Callable[[Loc, str], None]) -> None:
        """Route names unique; monitors' names unique, their VMs and routes known."""
        names: dict[str, int] = {}
        for i, route in enumerate(self.alerts):
            if route.name is None:
                continue
            if route.name in names:
                add(("alerts", i, "name"), f"duplicate route name {route.name!r}; "
                                           f"alerts[{names[route.name]}] already uses it")
            else:
                names[route.name] = i
        senders = {r.name for r in self.alerts if r.name and r.kind not in ("deadman", "log")}
        seen: dict[str, int] = {}
        vms = {vm.name for vm in self.vms}
        for i, monitor in enumerate(self.monitors):
            if monitor.name in seen:
                add(("monitors", i, "name"), f"duplicate monitor name {monitor.name!r}; "
                                             f"monitors[{seen[monitor.name]}] already uses it")
            seen.setdefault(monitor.name, i)
            if monitor.vm is not None and monitor.vm not in vms:
                add(("monitors", i, "vm"), unknown_name("VM", monitor.vm, sorted(vms)))
            for j, name in enumerate(monitor.routes):
                if name not in senders:
                    add(("monitors", i, "routes", j),
                        unknown_name("alert route", name, sorted(senders),
                                     "named routes that send alerts"))
            if not any(r.kind not in ("deadman", "log") for r in self.alerts):
                add(("monitors", i), "no alert route can carry this monitor's alert: add an "
                                     "alerts: route (webhook, alertmanager, email or command)")

    def _check_unique(self, add: Callable[[Loc, str], None]) -> None:
        def unique(kind: str, entries: Iterable[tuple[Loc, str]]) -> None:
            first: dict[str, Loc] = {}
            for loc, name in entries:
                if name in first:
                    add(
                        loc,
                        f"duplicate {kind} name {name!r}; {format_path(first[name])} "
                        "already uses it",
                    )
                else:
                    first[name] = loc

        unique("network", ((("networks", i, "name"), n.name) for i, n in enumerate(self.networks)))
        unique(
            "host or witness",
            [
                *((("hosts", i, "name"), h.name) for i, h in enumerate(self.hosts)),
                *((("witnesses", i, "name"), w.name) for i, w in enumerate(self.witnesses)),
            ],
        )
        unique("VM", ((("vms", i, "name"), vm.name) for i, vm in enumerate(self.vms)))
        unique(
            "datastore",
            ((("datastores", i, "name"), ds.name) for i, ds in enumerate(self.datastores)),
        )
        unique("group", ((("groups", i, "name"), g.name) for i, g in enumerate(self.groups)))
        for i, network in enumerate(self.networks):
            if network.name == "all":
                add(
                    ("networks", i, "name"),
                    "'all' is reserved (events use network: all for "
                    "every network); choose another name",
                )
        for i, host in enumerate(self.hosts):
            if host.name == "any":
                add(
                    ("hosts", i, "name"),
                    "'any' is reserved (expectations use running_on: any); choose another name",
                )
        heartbeat = set(self.heartbeat_networks())
        addresses: dict[tuple[str, str], Loc] = {}
        for i, host in enumerate(self.hosts):
            for network_name, interface in host.interfaces.items():
                if interface.address is None:
                    continue
                at: Loc = ("hosts", i, "interfaces", network_name, "address")
                if network_name in heartbeat and ":" in interface.address:
                    add(
                        at,
                        f"{interface.address} is an IPv6 address; heartbeats are sent over "
                        "IPv4 (UDP): give the host's IPv4 address on this network",
                    )
                where = (network_name, interface.address)
                if where in addresses:
                    add(
                        at,
                        f"address {interface.address} on network {network_name} is also given "
                        f"at {format_path(addresses[where])}; every host has its own address",
                    )
                else:
                    addresses[where] = at
        macs: dict[str, Loc] = {}
        for i, host in enumerate(self.hosts):
            for network_name, interface in host.interfaces.items():
                if interface.mac is None:
                    continue
                loc: Loc = ("hosts", i, "interfaces", network_name, "mac")
                if interface.mac in macs:
                    add(
                        loc,
                        f"MAC address {interface.mac} is also given at "
                        f"{format_path(macs[interface.mac])}; every NIC has its own MAC",
                    )
                else:
                    macs[interface.mac] = loc

    def _check_networks(self, add: Callable[[Loc, str], None]) -> None:
        names = self.network_list()
        known = set(names)
        heartbeat = self.heartbeat_networks()

        def check(loc: Loc, name: str) -> None:
            if name not in known:
                add(loc, unknown_name("network", name, names))

        if not heartbeat:
            add(
                ("networks",),
                "no network has role heartbeat; give at least one network role: heartbeat",
            )
        for i, host in enumerate(self.hosts):
            for k, name in enumerate(host.networks):
                check(("hosts", i, "networks", k), name)
            for name in host.interfaces:
                check(("hosts", i, "interfaces", name), name)
            on = host.network_names(names)
            if heartbeat and not any(name in heartbeat for name in on):
                where: Loc = ("hosts", i, "networks") if host.networks else ("hosts", i)
                add(
                    where,
                    f"host {host.name!r} is on no heartbeat network (it is on: "
                    f"{', '.join(on) or 'nothing'}); add one of: {', '.join(heartbeat)}",
                )
        for i, witness in enumerate(self.witnesses):
            for k, name in enumerate(witness.networks):
                check(("witnesses", i, "networks", k), name)
        for host_name, fence in self.fencing.items():
            if fence.network is not None:
                check(("fencing", host_name, "network"), fence.network)

    def _check_references(self, add: Callable[[Loc, str], None]) -> None:
        hosts = [host.name for host in self.hosts]
        host_set = set(hosts)
        nodes = self.node_names()
        node_set = set(nodes)
        vms = [vm.name for vm in self.vms]
        vm_set = set(vms)
        datastores = [ds.name for ds in self.datastores]
        datastore_set = set(datastores)

        seen_members: set[str] = set()
        for k, member in enumerate(self.store.members):
            loc: Loc = ("store", "members", k)
            if member not in node_set:
                add(loc, unknown_name("host or witness", member, nodes, "hosts and witnesses"))
            elif member in seen_members:
                add(loc, f"{member!r} is listed twice")
            seen_members.add(member)
        witness_set = {witness.name for witness in self.witnesses}

        def host_ref(loc: Loc, name: str, what: str) -> None:
            if name in host_set:
                return
            if name in witness_set:
                add(loc, f"{name!r} is a witness, which runs no VMs; {what} names a host")
            else:
                add(loc, unknown_name("host", name, hosts))

        for host_name in self.fencing:
            host_ref(("fencing", host_name), host_name, "each fencing entry")
        if self.store.bootstrap is not None:
            host_ref(("store", "bootstrap"), self.store.bootstrap, "store.bootstrap")
        for i, group in enumerate(self.groups):
            seen: set[str] = set()
            for k, vm_name in enumerate(group.vms):
                if vm_name not in vm_set:
                    add(("groups", i, "vms", k), unknown_name("VM", vm_name, vms))
                elif vm_name in seen:
                    add(("groups", i, "vms", k), f"VM {vm_name!r} is listed twice")
                seen.add(vm_name)
        for i, vm in enumerate(self.vms):
            if vm.host is not None:
                host_ref(("vms", i, "host"), vm.host, "host")
            for k, preferred in enumerate(vm.prefer):
                host_ref(("vms", i, "prefer", k), preferred, "prefer")
        if datastores:
            for i, host in enumerate(self.hosts):
                for k, name in enumerate(host.datastores):
                    if name not in datastore_set:
                        add(
                            ("hosts", i, "datastores", k),
                            unknown_name("datastore", name, datastores),
                        )
            for i, vm in enumerate(self.vms):
                for k, name in enumerate(vm.datastores):
                    if name not in datastore_set:
                        add(
                            ("vms", i, "datastores", k), unknown_name("datastore", name, datastores)
                        )

    def _check_capacity(self, add: Callable[[Loc, str], None]) -> None:
        by_name = {host.name: host for host in self.hosts}
        placed: dict[str, list[int]] = {}
        for i, vm in enumerate(self.vms):
            host = by_name.get(vm.host) if vm.host is not None else None
            if host is None:
                continue
            fits = True
            if vm.cpus > host.cpus:
                fits = False
                add(
                    ("vms", i, "cpus"),
                    f"VM {vm.name!r} needs {vm.cpus} CPUs but its host "
                    f"{host.name!r} has {host.cpus}",
                )
            if vm.memory > host.memory:
                fits = False
                add(
                    ("vms", i, "memory"),
                    f"VM {vm.name!r} needs {format_size(vm.memory)} of "
                    f"memory but its host {host.name!r} has "
                    f"{format_size(host.memory)}",
                )
            if fits:
                placed.setdefault(host.name, []).append(i)
        for host_name, indices in placed.items():
            host = by_name[host_name]
            for resource, need, have, fmt in (
                ("CPUs", [self.vms[i].cpus for i in indices], host.cpus, str),
                ("memory", [self.vms[i].memory for i in indices], host.memory, format_size),
            ):
                if sum(need) <= have:
                    continue
                running = 0
                overflow = indices[-1]
                for index, amount in zip(indices, need, strict=True):
                    running += amount
                    if running > have:
                        overflow = index
                        break
                listing = ", ".join(
                    f"{self.vms[i].name} ({fmt(n)})" for i, n in zip(indices, need, strict=True)
                )
                add(
                    ("vms", overflow, "host"),
                    f"the VMs placed on host {host_name!r} need {fmt(sum(need))} {resource} "
                    f"together but it has {fmt(have)}: {listing}; start some elsewhere or "
                    "leave their host unset",
                )
