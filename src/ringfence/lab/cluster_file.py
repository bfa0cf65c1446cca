"""The cluster files of a lab: the scenario's `cluster:` section made real.

One function, `lab_cluster`, writes what a real cluster file adds to a scenario's cluster:
the heartbeat key, each network's port, each host's interfaces (the lab's MACs, NIC names and
addresses), the `process` hypervisor, the store (etcd endpoints as that host reaches them, or
the SQLite file), fencing through the lab's fence agent, and datastore write probes on the
host's own datastore directories. Everything else is the scenario's, unchanged. Each host gets
its own file because endpoints and datastore paths are per host; the operator tools get one
with every endpoint.
"""

from __future__ import annotations

from typing import Any

import yaml

from ringfence.config import ClusterConfig, parse_cluster
from ringfence.lab.paths import LabPaths
from ringfence.lab.store_members import LabStore
from ringfence.lab.topology import Topology

IMPLICIT_DATASTORE = "vmstore"  # the simulator's datastore of a host whose file names none


def lab_cluster(cluster: ClusterConfig, topology: Topology, store: LabStore, paths: LabPaths,
                host: str | None, *, implicit_datastore: bool = False) -> dict[str, Any]:
    """The cluster file that `host` (None: the operator tools) uses in this lab."""
    data: dict[str, Any] = cluster.model_dump(mode="json", exclude_none=True)
    # A route takes only its own kind's fields: the others' defaults must not be written.
    data["alerts"] = [{"kind": route.kind, **route.model_dump(mode="json", exclude_defaults=True)}
                      for route in cluster.alerts]
    data["key_file"] = str(paths.key)
    data.pop("api", None)
    for network in data["networks"]:
        network["port"] = topology.ports[network["name"]]
    hosts: list[dict[str, Any]] = []
    for spec in cluster.hosts:
        node = topology.nodes[spec.name]
        entry = data["hosts"][len(hosts)]
        entry["hypervisor"] = "process"
        entry["networks"] = list(node.nics)
        interfaces: dict[str, Any] = {
            network: {"mac": nic.mac, "name": nic.ifname, "address": nic.address}
            for network, nic in node.nics.items()}
        for network in topology.heartbeat:
            if network not in interfaces:  # not on it: an address nobody answers at
                interfaces[network] = {"address": topology.address(node.index,
                                                                    topology.net_index[network])}
        entry["interfaces"] = interfaces
        if implicit_datastore and not spec.datastores:
            entry["datastores"] = [IMPLICIT_DATASTORE]
        hosts.append(entry)
    data["hosts"] = hosts
    for entry in data.get("witnesses", []):
        first = next(iter(topology.nodes[entry["name"]].nics.values()), None)
        if first is not None:
            entry["address"] = first.address
    if store.kind == "etcd":
        data["store"] = {"kind": "etcd", "members": cluster.store_members(),
                         "endpoints": store.endpoints_for(host)}
    else:
        data["store"] = {"kind": "sqlite", "members": cluster.store_members(),
                         "path": str(store.sqlite_path)}
    # The lab starts on an empty store, where the simulator's cluster already runs: one host
    # writes the cluster's identity into it (the file's choice, else the first host).
    data["store"]["bootstrap"] = cluster.store.bootstrap or cluster.hosts[0].name
    data["fencing"] = {
        target: {"agent": str(paths.fence_agent),
                 "params": {"plug": target, "lab": str(paths.root),
                            **({"delay": spec.delay} if spec.delay else {}),
                            **({"hang": spec.hang} if spec.hang else {}),
                            **({"via": spec.network} if spec.network else {})}}
        for target, spec in cluster.fencing.items()}
    datastores = [d.name for d in cluster.datastores]
    if implicit_datastore and IMPLICIT_DATASTORE not in datastores:
        datastores.append(IMPLICIT_DATASTORE)
    data["datastores"] = [
        {"name": name,
         **({"probe": {"kind": "file",
                       "path": str(paths.datastore(host, name) / "probe")}} if host else {})}
        for name in datastores]
    parse_cluster(data, file=str(paths.config(host)))  # the lab must never write a bad file
    return data


def write_cluster_files(cluster: ClusterConfig, topology: Topology, store: LabStore,
                        paths: LabPaths, *, implicit_datastore: bool = False) -> None:
    for host in [*(h.name for h in cluster.hosts), None]:
        data = lab_cluster(cluster, topology, store, paths, host,
                           implicit_datastore=implicit_datastore)
        paths.config(host).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        if host is not None:
            for name in (d["name"] for d in data["datastores"]):
                paths.datastore(host, name).mkdir(parents=True, exist_ok=True)
