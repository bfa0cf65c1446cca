"""`ringfence status`: what the store says about a cluster, read-only.

Hosts (state, lease age, incarnation, health, each host's own view of its heartbeat links to
every peer), the store (kind, members, whether it answers, revision, leader), VMs (host,
fencing token, whether they wait for a handover or a place), and the open incidents (from the
journal the hosts mirror into the store).

Exit 0 when every host is online and every VM has a host; 1 when the store does not answer,
a host is not online, or a VM has no host; 2 when no cluster file can be found or read.
Reading is lock-free and changes nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ringfence.config import ClusterConfig, load_cluster
from ringfence.core import leases
from ringfence.errors import ConfigError
from ringfence.store.base import KeyValue, Store, StoreUnavailable

DEFAULT_CONFIG = Path("/etc/ringfence/cluster.yaml")


def demo_pointer() -> Path:
    """Where a running `ringfence demo` says its cluster file is: three lines, the cluster
    file, the demo's pid and that process's start time (so that a pid reused after the demo
    died is not taken for it)."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp")
    return base / f"ringfence-demo-{os.getuid()}.path"


def write_demo_pointer(config_path: Path) -> None:
    """Called by the demo that runs in this process: `ringfence status` finds it."""
    from ringfence.hypervisor.process_vm import proc_starttime

    pid = os.getpid()
    demo_pointer().write_text(f"{config_path}\n{pid}\n{proc_starttime(pid)}\n")


def remove_demo_pointer(config_path: Path) -> None:
    """Remove the pointer if it is still this demo's (another demo may have started since)."""
    pointer = demo_pointer()
    try:
        if pointer.read_text().split("\n")[0] == str(config_path):
            pointer.unlink()
    except OSError:
        pass


def running_demo() -> Path | None:
    """The cluster file of the demo the pointer names, if that demo still runs."""
    from ringfence.hypervisor.process_vm import proc_starttime

    try:
        lines = demo_pointer().read_text().split("\n")
    except OSError:
        return None
    try:
        path, pid, started = Path(lines[0]), int(lines[1]), int(lines[2])
    except (IndexError, ValueError):
        return None  # not written by a running demo of this version: a dead demo's leftover
    if proc_starttime(pid) != started or not path.exists():
        return None
    return path


def find_config(given: str | None) -> Path:
    if given:
        return Path(given)
    if os.environ.get("RINGFENCE_CONFIG"):
        return Path(os.environ["RINGFENCE_CONFIG"])
    if DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    demo = running_demo()
    if demo is not None:
        return demo
    stale = (f" ({demo_pointer()} names a demo that no longer runs)"
             if demo_pointer().exists() else "")
    raise ConfigError(f"no cluster file: give --config, set RINGFENCE_CONFIG, create "
                      f"{DEFAULT_CONFIG}, or start `ringfence demo`{stale}")


def store_kind(config: ClusterConfig) -> str:
    """The engine `open_store` picks: etcd when named or when endpoints are given."""
    return config.store.kind or ("etcd" if config.store.endpoints else "sqlite")


def _host_state(config: ClusterConfig, host: str, kv: dict[str, KeyValue]) -> str:
    def get(key: str) -> KeyValue | None:
        return kv.get(key)

    info, lease = get(leases.host_info_key(host)), get(leases.host_lease_key(host))
    incarnation = info.value.get("incarnation") if info else None

    def marks(key: str) -> bool:
        record = get(key)
        return record is not None and record.value.get("incarnation") == incarnation

    if info is None:
        return "never joined"
    if lease is None:
        if marks(leases.host_fenced_key(host)):
            return "fenced"
        if marks(leases.host_offline_key(host)):
            return "offline"
        return "suspect (lease expired)"
    if get(leases.host_maintenance_key(host)) is not None:
        return "maintenance"
    links = get(leases.host_links_key(host))
    health = get(leases.host_health_key(host))
    if health is not None and health.value.get("state") in ("ineligible", "degraded"):
        return str(health.value["state"])
    if links is not None:
        return str(links.value.get("state", "online"))
    return "online"


def collect(config: ClusterConfig, store: Store) -> dict[str, Any]:
    """The status document (the `--json` output). Raises StoreUnavailable."""
    hosts_kv = store.get_prefix(leases.HOSTS_PREFIX)
    vms_kv = store.get_prefix(leases.VMS_PREFIX)
    leader = store.get(leases.MANAGER_KEY)
    by_key = hosts_kv.by_key
    hosts: dict[str, Any] = {}
    for spec in config.hosts:
        lease = by_key.get(leases.host_lease_key(spec.name))
        ttl = store.time_to_live(lease.lease) if lease is not None else None
        links = by_key.get(leases.host_links_key(spec.name))
        health = by_key.get(leases.host_health_key(spec.name))
        info = by_key.get(leases.host_info_key(spec.name))
        hosts[spec.name] = {
            "state": _host_state(config, spec.name, by_key),
            "lease_age_s": (round(config.timing.host_lease_ttl - ttl, 1)
                            if ttl is not None else None),
            "incarnation": info.value.get("incarnation") if info else None,
            "health": health.value if health else None,
            "links": links.value.get("peers", {}) if links else {},
        }
    vms: dict[str, Any] = {}
    owners = {kv.key.split("/")[1]: kv for kv in vms_kv.items if kv.key.endswith("/owner")}
    for vm in config.vms:
        kv = owners.get(vm.name)
        record = kv.value if kv else {}
        state = "assigned"
        if record.get("stopped_by"):
            state = f"stopped by {record['stopped_by']}"
        elif not kv or record.get("host") is None:
            state = "pending" if "from" not in record else "released"
        elif record.get("after"):
            state = f"moving from {record['after']}"
        vms[vm.name] = {"host": record.get("host"), "token": kv.mod_revision if kv else None,
                        "state": state}
    return {
        "incidents": open_incidents(store),
        "cluster": config.name,
        "store": {"kind": store_kind(config), "members": config.store_members()
                  if store_kind(config) == "etcd" else [config.store.path or "?"],
                  "quorum": True, "revision": max(hosts_kv.revision, vms_kv.revision)},
        "leader": leader.value.get("host") if leader else None,
        "hosts": hosts,
        "vms": vms,
    }


def open_incidents(store: Store, horizon: float = 86_400.0) -> list[dict[str, Any]]:
    """Incidents still open, built from the journal the hosts mirror into the store (the
    last `horizon` seconds of it). Raises StoreUnavailable."""
    import time

    from ringfence.journal.events import from_entries
    from ringfence.journal.incidents import build_incidents
    from ringfence.journal.store_mirror import read_store_journal

    since = time.time() - horizon
    entries = [e for e in read_store_journal(store) if float(e.get("t", 0)) >= since]
    try:
        events = from_entries(entries, source="store")
    except ConfigError:
        return []  # a damaged mirror never hides the cluster's state
    return [{"id": i.id, "severity": i.severity, "opened_at": round(i.opened_at, 3),
             "title": i.title}
            for i in build_incidents(events, stream_end=time.time()) if i.open]


def healthy(document: dict[str, Any]) -> bool:
    return (document["store"]["quorum"]
            and all(h["state"] == "online" for h in document["hosts"].values())
            and all(v["host"] or v["state"].startswith("stopped by")
                    for v in document["vms"].values()))


def render(document: dict[str, Any]) -> str:
    lines = [f"cluster {document['cluster']}: store {document['store']['kind']} "
             f"({', '.join(document['store']['members'])}), "
             + (f"revision {document['store']['revision']}, leader {document['leader']}"
                if document["store"]["quorum"]
                else f"NO QUORUM: {document['store'].get('error') or 'the store does not answer'}")]
    lines.append("")
    lines.append(f"{'HOST':<12} {'STATE':<24} {'LEASE AGE':>9} {'INC':>4}  LINKS")
    for name, host in document["hosts"].items():
        age = f"{host['lease_age_s']:.1f}s" if host["lease_age_s"] is not None else "-"
        links = ", ".join(
            f"{peer}:{'+'.join(v['alive']) or 'none'}"
            + (f" (lost {'+'.join(v['dead'])})" if v["dead"] else "")
            for peer, v in sorted(host["links"].items()))
        lines.append(f"{name:<12} {host['state']:<24} {age:>9} "
                     f"{host['incarnation'] or '-':>4}  {links}")
    lines.append("")
    lines.append(f"{'VM':<16} {'HOST':<12} {'TOKEN':>6}  STATE")
    for name, vm in document["vms"].items():
        lines.append(f"{name:<16} {vm['host'] or '-':<12} {vm['token'] or '-':>6}  "
                     f"{vm['state']}")
    incidents = document.get("incidents", [])
    lines.append("")
    lines.append(f"open incidents: {len(incidents)}"
                 + ("" if incidents else " (ringfence incident list shows them all)"))
    for incident in incidents:
        lines.append(f"  {incident['id']} [{incident['severity']}] {incident['title']}")
    return "\n".join(lines)


def run_status(config_path: str | None, *, as_json: bool) -> int:
    from ringfence.store.factory import open_cluster_store

    config = load_cluster(find_config(config_path))
    store = open_cluster_store(config)
    try:
        document = collect(config, store)
    except StoreUnavailable as exc:
        document = {"cluster": config.name,
                    "store": {"kind": store_kind(config), "quorum": False,
                              "members": config.store_members(), "error": str(exc)},
                    "leader": None, "hosts": {}, "vms": {}, "incidents": []}
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(render(document) + "\n")
    return 0 if healthy(document) else 1
