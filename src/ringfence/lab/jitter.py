"""Heartbeat jitter in the lab: the NAT rules and relays of `ringfence.lab.relay`.

`Jitter` holds the delay per (host, heartbeat network): every heartbeat that host sends on that
network is held for a uniform random time in [0, delay). `install` writes the redirect rules
into each such host's namespace once (they belong to the namespace and survive the host's
power cycles); `start` starts the host's relays at each boot, before its agent (a relay dies
with its host's processes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ringfence.lab import netns
from ringfence.lab.topology import Topology

MARK = 0x52F  # datagrams the relay sends carry it; the redirect rule lets them pass
BASE_PORT = 41000


class Jitter:
    def __init__(self, topology: Topology, delays: dict[tuple[str, str], float]) -> None:
        self.topology = topology
        self.delays = {key: value for key, value in delays.items() if value > 0}

    def routes(self, host: str, network: str) -> list[tuple[int, str, int]]:
        """(relay port, peer address, heartbeat port) for every peer of `host` on `network`."""
        j = self.topology.net_index[network]
        port = self.topology.ports[network]
        routes = []
        for peer in self.topology.nodes.values():
            if peer.name == host or peer.kind != "host" or network not in peer.nics:
                continue
            routes.append((BASE_PORT + 64 * j + peer.index, peer.nics[network].address, port))
        return routes

    def hosts(self) -> list[str]:
        return sorted({host for host, _network in self.delays})

    def install(self) -> None:
        for host in self.hosts():
            rules = []
            for (owner, network), _delay in sorted(self.delays.items()):
                if owner != host:
                    continue
                for local, peer, port in self.routes(host, network):
                    rules.append(f"    meta mark != {MARK} ip daddr {peer} udp dport {port} "
                                 f"redirect to :{local}")
            script = ["table ip ringfence_relay {",
                      "  chain output { type nat hook output priority -100; policy accept;",
                      *rules, "  }", "}"]
            netns.nft(self.topology.nodes[host].ns, "\n".join(script) + "\n")

    def start(self, host: str, log: Path) -> list[subprocess.Popen[bytes]]:
        started = []
        node = self.topology.nodes[host]
        for (owner, network), delay in sorted(self.delays.items()):
            if owner != host or network not in node.nics:
                continue
            argv = ["ip", "netns", "exec", node.ns, sys.executable, "-m", "ringfence.lab.relay",
                    "--bind", node.nics[network].address, "--mark", str(MARK),
                    "--jitter", repr(delay)]
            for local, peer, port in self.routes(host, network):
                argv += ["--route", f"{local}:{peer}:{port}"]
            with log.open("ab") as out:
                started.append(subprocess.Popen(argv, stdout=out, stderr=out,
                                                stdin=subprocess.DEVNULL,
                                                start_new_session=True))
        return started
