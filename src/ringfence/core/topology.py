"""Index tables derived once from a cluster file: host and link numbering for the heartbeat
mesh. Pure data; building it never fails for a validated `ClusterConfig`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ringfence.config import ClusterConfig
from ringfence.core.ports import BoolArray


@dataclass(frozen=True)
class Topology:
    hosts: tuple[str, ...]
    links: tuple[str, ...]  # heartbeat networks, in file order
    host_links: BoolArray  # [host, link]: the host has a NIC on that heartbeat network

    @staticmethod
    def from_config(config: ClusterConfig) -> Topology:
        hosts = tuple(h.name for h in config.hosts)
        links = tuple(config.heartbeat_networks())
        matrix = np.zeros((len(hosts), len(links)), dtype=np.bool_)
        for i, host in enumerate(hosts):
            on = set(config.host_networks(host))
            for j, link in enumerate(links):
                matrix[i, j] = link in on
        return Topology(hosts, links, matrix)

    def index(self, host: str) -> int:
        return self.hosts.index(host)
