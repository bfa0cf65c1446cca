"""The lab's network: one namespace per host and per witness, one switch namespace with one
bridge per network, and one veth pair per (node, network the node is on).

Names and addresses come from the lab's *slot* (a small number that no other lab on this
machine holds, see `ringfence.lab.slots`): namespaces ``rfl<slot>-<node>`` and
``rfl<slot>-switch``, addresses ``10.<100+slot>.<network index>.<node index + 1>/24``. Inside a
node's namespace the NIC of a network is called what the cluster file calls it
(``interfaces.<network>.name``), else after the network; its MAC is the file's, else one
generated from the slot and the node. The switch-side ends are ``n<node>p<network>``. Nothing
is ever created in the root namespace.

What the switch does (nftables in the switch namespace, table ``bridge ringfence_lab``):

* a cable pulled (`set_cable`): the switch-side end goes down, so the host's NIC really loses
  carrier and ``/sys/class/net/<nic>/carrier`` reads 0 inside the host, as the probes see it;
* a host powered off (`set_powered`): its switch ports go down too (a peer's connection
  attempts then time out, as towards a dead machine, instead of being refused);
* a partition (`set_filters`): frames between ports of different groups are dropped on the
  networks it names; endpoints not listed form one more group, as in the simulator;
* packet loss: heartbeat datagrams (UDP to the network's heartbeat port) dropped at random,
  with ``numgen random``, on every heartbeat network or on one; each datagram from one host to
  another is dropped independently with that probability.

Failure semantics: building raises `LabError` naming the command that failed (the caller
tears down what was built); teardown never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ringfence.agent.transport import DEFAULT_PORT
from ringfence.config import ClusterConfig
from ringfence.lab import netns
from ringfence.lab.netns import LabError

IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
NFT_TABLE = "ringfence_lab"


@dataclass
class Nic:
    node: str
    network: str
    j: int  # network index in the cluster file
    ifname: str  # its name inside the node's namespace now
    port: str  # the switch-side end
    mac: str
    address: str  # without prefix length
    cable: bool = True  # switch side up
    powered: bool = True  # host side up


@dataclass
class Node:
    name: str
    index: int  # hosts first, then witnesses (file order)
    kind: str  # "host" or "witness"
    ns: str
    nics: dict[str, Nic] = field(default_factory=dict)  # by network


def _valid_ifname(name: str | None) -> bool:
    return bool(name) and IFNAME.match(name or "") is not None and name not in (".", "..")


class Topology:
    """Names, addresses and MACs of one lab, and the commands that build and change it."""

    def __init__(self, cluster: ClusterConfig, slot: int) -> None:
        if not 0 <= slot < 100:
            raise ValueError("slot must be 0..99")
        self.slot = slot
        self.prefix = f"rfl{slot}"
        self.switch = f"{self.prefix}-switch"
        self.networks = cluster.network_list()
        self.net_index = {name: j for j, name in enumerate(self.networks)}
        # The agent's own default ports, not corosync's 5404-5405 (the Pacemaker bench runs
        # corosync in the same namespaces); written into the lab's cluster file.
        self.ports = {n.name: n.port or DEFAULT_PORT + j for j, n in enumerate(cluster.networks)}
        self.heartbeat = cluster.heartbeat_networks()
        self.nodes: dict[str, Node] = {}
        given = {i.mac for h in cluster.hosts for i in h.interfaces.values() if i.mac}
        entries = [(h.name, "host") for h in cluster.hosts] + [
            (w.name, "witness") for w in cluster.witnesses]
        if len(entries) > 250:
            raise LabError("the lab builds at most 250 hosts and witnesses")
        for n, (name, kind) in enumerate(entries):
            node = Node(name, n, kind, self.namespace_of(name))
            spec = cluster.host(name).interfaces if kind == "host" else {}
            for network in cluster.host_networks(name):
                j = self.net_index[network]
                iface = spec.get(network)
                ifname = iface.name if iface is not None and _valid_ifname(iface.name) else None
                if ifname is None:
                    ifname = network if _valid_ifname(network) else f"net{j}"
                mac = iface.mac if iface is not None and iface.mac else None
                if mac is None:
                    mac = f"52:54:{slot:02x}:{n // 256:02x}:{n % 256:02x}:{j:02x}"
                    while mac in given:
                        mac = mac[:-2] + f"{(int(mac[-2:], 16) + 64) % 256:02x}"
                given.add(mac)
                node.nics[network] = Nic(name, network, j, ifname, f"n{n}p{j}", mac,
                                         self.address(n, j))
            self.nodes[name] = node
        self.built = False  # set_filters touches the switch only once this object built it
        self.partitions: dict[str, dict[str, int]] = {}
        self.loss_all = 0.0  # heartbeat datagrams dropped on every heartbeat network
        self.loss: dict[str, float] = {}  # ... or on one heartbeat network

    # ------------------------------------------------------------------ addresses
    def subnet(self, j: int) -> str:
        return f"10.{100 + self.slot}.{j}"

    def address(self, n: int, j: int) -> str:
        return f"{self.subnet(j)}.{n + 1}"

    def namespace_of(self, name: str) -> str:
        """The network namespace of host or witness `name`."""
        return f"{self.prefix}-{name}"

    def launcher_template(self) -> str:
        """A command prefix that runs a process in host ``{host}``'s namespace (the
        agent's ``--vm-launcher``)."""
        return f"ip netns exec {self.namespace_of('{host}')}"

    def namespaces(self) -> list[str]:
        return [self.switch, *(node.ns for node in self.nodes.values())]

    # ------------------------------------------------------------------ build / teardown
    def build(self, record_dir: Path) -> None:
        """Create every namespace, bridge and veth, address and bring up everything; write
        each node's namespace inode to ``record_dir/<node>.ino`` (the fence agent reads it)."""
        for name in self.namespaces():
            if netns.exists(name):
                raise LabError(f"network namespace {name} exists already; another lab holds "
                               f"this slot, or a crashed one left it (ip netns del {name})")
        netns.add(self.switch)
        self.built = True
        for node in self.nodes.values():
            netns.add(node.ns)
        for ns in self.namespaces():
            netns.in_ns(ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6", check=False)
        switch = ["link set lo up"]
        for j, _network in enumerate(self.networks):
            switch += [f"link add br{j} type bridge", f"link set br{j} up"]
        for node in self.nodes.values():
            for nic in node.nics.values():
                switch += [f"link add {nic.port} type veth peer name {nic.ifname} netns "
                           f"{node.ns}",
                           f"link set {nic.port} master br{nic.j}",
                           f"link set {nic.port} up"]
        netns.run(["ip", "-n", self.switch, "-batch", "-"], stdin="\n".join(switch) + "\n")
        for node in self.nodes.values():
            commands = ["link set lo up"]
            for nic in node.nics.values():
                commands += [f"link set dev {nic.ifname} address {nic.mac}",
                             f"addr add {nic.address}/24 dev {nic.ifname}",
                             f"link set {nic.ifname} up"]
            netns.run(["ip", "-n", node.ns, "-batch", "-"], stdin="\n".join(commands) + "\n")
            (record_dir / f"{node.name}.ino").write_text(f"{netns.inode(node.ns)}\n")
        self.set_filters()

    def teardown(self) -> None:
        """Delete every namespace of this lab (their veths and bridges go with them)."""
        if not self.built:
            return  # build refused (the names were taken): they are not ours
        self.built = False
        for ns in self.namespaces():
            if netns.exists(ns):
                netns.delete_quiet(ns)

    # ------------------------------------------------------------------ changes
    def set_cable(self, node: str, network: str, up: bool) -> None:
        nic = self.nodes[node].nics[network]
        nic.cable = up
        self._apply_ports([nic])

    def set_powered(self, node: str, up: bool) -> None:
        nics = list(self.nodes[node].nics.values())
        for nic in nics:
            nic.powered = up
        self._apply_ports(nics)

    def _apply_ports(self, nics: list[Nic]) -> None:
        """A switch port is up while its cable is in and the node's NIC has power. Both are
        done at the switch end, in the switch namespace, where no process of a host runs:
        nothing the lab does to a host's processes can catch the lab's own `ip` there."""
        commands = [f"link set {nic.port} {'up' if nic.cable and nic.powered else 'down'}"
                    for nic in nics]
        if commands:
            netns.run(["ip", "-n", self.switch, "-batch", "-"], stdin="\n".join(commands) + "\n")

    def rename(self, node: str) -> dict[str, str]:
        """New names for the node's NICs (``enp<index+3>s0f<j>``, MACs kept), as a boot
        brings them up; only while the host is off (nothing of it runs)."""
        spec = self.nodes[node]
        renamed: dict[str, str] = {}
        commands: list[str] = []
        for k, network in enumerate(sorted(spec.nics)):
            nic = spec.nics[network]
            new = f"enp{spec.index + 3}s0f{k}"
            if new != nic.ifname:
                commands += [f"link set dev {nic.ifname} down",
                             f"link set dev {nic.ifname} name {new}",
                             f"link set dev {new} up"]
                nic.ifname = new
            renamed[network] = new
        if commands:
            netns.run(["ip", "-n", spec.ns, "-batch", "-"], stdin="\n".join(commands) + "\n")
        return renamed

    def partition(self, groups: list[list[str]], networks: list[str] | None) -> None:
        placed = {member: g for g, members in enumerate(groups) for member in members}
        for network in networks or self.networks:
            self.partitions[network] = dict(placed)
        self.set_filters()

    def heal(self, networks: list[str] | None) -> None:
        for network in networks or self.networks:
            self.partitions.pop(network, None)
        self.set_filters()

    def set_filters(self) -> None:
        """Rewrite the switch's rule set from the partitions and the loss settings, in one
        atomic nftables transaction (nothing before `build`: never another lab's switch)."""
        if self.built:
            netns.nft(self.switch, self.filter_script())

    def filter_script(self) -> str:
        """The switch's nftables script for the current partitions and loss settings."""
        rules: list[str] = []
        for network, groups in sorted(self.partitions.items()):
            ports = [(nic.port, groups.get(node.name, -1)) for node in self.nodes.values()
                     for nic in node.nics.values() if nic.network == network]
            for a, group_a in ports:
                others = [b for b, group_b in ports if group_b != group_a]
                if others:
                    rules.append(f"iifname \"{a}\" oifname {{ {', '.join(map(_q, others))} }} "
                                 f"drop")
        for network in self.heartbeat:
            probability = max(self.loss_all, self.loss.get(network, 0.0))
            members = [nic.port for node in self.nodes.values()
                       for nic in node.nics.values() if nic.network == network]
            if probability > 0 and members:
                rules.append(f"iifname {{ {', '.join(map(_q, members))} }} udp dport "
                             f"{self.ports[network]} {_random(probability)} drop")
        script = [f"table bridge {NFT_TABLE} {{}}", f"flush table bridge {NFT_TABLE}",
                  f"table bridge {NFT_TABLE} {{",
                  "  chain forward { type filter hook forward priority 0; policy accept;",
                  *(f"    {rule}" for rule in rules), "  }", "}"]
        return "\n".join(script) + "\n"


def _q(name: str) -> str:
    return f"\"{name}\""


def _random(probability: float) -> str:
    return f"numgen random mod 1000000 < {round(probability * 1_000_000)}"
