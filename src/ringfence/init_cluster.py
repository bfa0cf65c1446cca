"""`ringfence init`: a complete, commented cluster file and a cluster key, for the hosts given.

    ringfence init --name atl --hosts hv1=10.0.0.1,hv2=10.0.0.2,hv3=10.0.0.3 \\
        [--ring1 hv1=10.0.1.1,hv2=10.0.1.2,hv3=10.0.1.3] [--store etcd|sqlite] \\
        [--out cluster.yaml] [--key cluster.key]

What it writes:

- the cluster file: the heartbeat network ``ring0`` (and ``ring1`` when given: two links are
  what tells one lost link from a lost host), every host with its addresses, the store (etcd on
  every host by default, TLS file paths under /etc/ringfence, ``bootstrap`` the first host),
  the default timing and policy written out so that they can be read and changed, and the
  parts that need the operator's knowledge as commented blocks (fence agents per host, VMs,
  datastores, alert routes) with what to put there;
- the cluster key: 64 random bytes, mode 0600 (the heartbeat authentication key; the same file
  goes to every host, at /etc/ringfence/cluster.key, where the cluster file names it).

The file is validated with the same loader as every command before it is written, so every
command loads it; ``ringfence check`` then names what is still missing (fencing, alerts), and
without ``--ring1`` it fails on purpose: one heartbeat network is a single point of failure
(losing it cuts every host off), and the printed next steps say so first.
Nothing existing is overwritten: an existing ``--out`` or ``--key`` is an error (exit 2) and
nothing is written. Afterwards it prints the next steps.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from ringfence.config import parse_cluster, parse_yaml
from ringfence.errors import ConfigError
from ringfence.paths import write_new_file

__all__ = ["cluster_text", "parse_host_list", "run_init"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
MAX_INIT_HOSTS = 32
INSTALLED_KEY = "/etc/ringfence/cluster.key"  # where the key goes on every host (step 4)


def parse_host_list(text: str, option: str) -> dict[str, str]:
    """``hv1=10.0.0.1,hv2=10.0.0.2`` -> {host: address}; ConfigError naming `option`."""
    found: dict[str, str] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, sep, address = part.partition("=")
        if not sep or not _NAME.match(name):
            raise ConfigError(f"expected NAME=ADDRESS pairs separated by commas "
                              f"(hv1=10.0.0.1,hv2=10.0.0.2), got {part!r}", path=option)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"{name}: {address!r} is not an IP address", path=option) from None
        if name in found:
            raise ConfigError(f"host {name} is given twice", path=option)
        found[name] = address
    if not found:
        raise ConfigError("give at least one host: NAME=ADDRESS", path=option)
    if len(found) > MAX_INIT_HOSTS:
        raise ConfigError(f"at most {MAX_INIT_HOSTS} hosts, got {len(found)}", path=option)
    return found


def cluster_text(name: str, hosts: dict[str, str], ring1: dict[str, str] | None, store: str,
                 key_path: str) -> str:
    """The cluster file (module docstring)."""
    names = list(hosts)
    lines = [
        f"# ringfence cluster file for {name}, written by `ringfence init`.",
        "# Check it with `ringfence check THIS-FILE`; the reference is docs/operations.md.",
        f"name: {name}",
        f"key_file: {key_path}   # the heartbeat key: the same file (mode 0600) on every host",
        "",
        "# Defaults written out: a host cut off from the store stops its VMs after",
        "# host_lease_ttl - safety_margin; its VMs move after host_lease_ttl + watchdog_timeout.",
        "timing: {heartbeat_interval: 200ms, host_lease_ttl: 6s, watchdog_timeout: 4s,",
        "         safety_margin: 1s}",
        "",
        "networks:",
        "  - {name: ring0, role: heartbeat, port: 5420}",
    ]
    if ring1:
        lines.append("  - {name: ring1, role: heartbeat, port: 5421}")
    else:
        lines.append("  # A second heartbeat network on other NICs and switches tells one lost "
                     "link (a")
        lines.append("  # warning) from a lost host: add `--ring1` or a ring1 entry and "
                     "addresses.")
    lines += ["", "hosts:"]
    for host, address in hosts.items():
        lines += [f"  - name: {host}",
                  "    cpus: 16          # what VMs may use on this host",
                  "    memory: 64GiB",
                  "    hypervisor: qemu:///system",
                  "    interfaces:",
                  "      # add `mac: ...` to each: ringfence finds a NIC by its MAC, whatever "
                  "its name",
                  f"      ring0: {{address: {address}}}"]
        if ring1:
            lines.append(f"      ring1: {{address: {ring1[host]}}}")
    lines += [""]
    if store == "etcd":
        endpoints = ", ".join(f'"https://{hosts[h]}:2379"' for h in names)
        lines += [
            "store:",
            "  kind: etcd",
            f"  members: [{', '.join(names)}]",
            f"  endpoints: [{endpoints}]",
            f"  bootstrap: {names[0]}   # writes the cluster's identity into the new, empty "
            "store",
            "  tls: {ca_file: /etc/ringfence/etcd-ca.pem,",
            "        cert_file: /etc/ringfence/etcd-client.pem,",
            "        key_file: /etc/ringfence/etcd-client.key}",
        ]
    else:
        lines += [
            "store:",
            "  kind: sqlite   # one host's file: for a single host or a test; a real cluster "
            "uses etcd",
            "  path: /var/lib/ringfence/store.db",
            f"  bootstrap: {names[0]}",
        ]
    lines += ["", "# Fence agents (ClusterLabs fence-agents): one per host, then drill each with",
              "# `ringfence fence test HOST`. Without them a lost host's VMs wait for its",
              "# watchdog (host_lease_ttl + watchdog_timeout).", "# fencing:"]
    for host in names:
        lines.append(f"#   {host}: {{agent: fence_ipmilan, params: {{ip: BMC-ADDRESS-OF-{host}, "
                     f"username: admin, password_file: /etc/ringfence/ipmi-{host}, lanplus: "
                     f"true}}}}")
    lines += [
        "",
        "# Datastores the VMs use, with a write probe (a host that can not write is unfit):",
        "# datastores:",
        "#   - {name: nfs1, probe: {kind: file, path: /mnt/nfs1/.ringfence-probe}}",
        "",
        "# VMs (libvirt domains): where each starts, its size and priority.",
        "vms: []",
        "#   - {name: erp, cpus: 8, memory: 32GiB, host: " + names[0]
        + ", priority: 100, domain_xml_file: /etc/ringfence/vms/erp.xml}",
        "",
        "policy: {host_failures_to_tolerate: 1, shutdown: conditional}",
        "",
        "# Alert routes that leave the cluster (and a dead-man's switch outside it):",
        "# alerts:",
        "#   - {kind: webhook, url: https://alerts.example.net/ringfence}",
        "#   - {kind: deadman, url: https://hc.example.net/ping/ID, every: 1m}",
        "",
    ]
    return "\n".join(lines)


def run_init(*, name: str, hosts_arg: str, ring1_arg: str | None, store: str, out: Path,
             key: Path | None) -> list[str]:
    """Write the file and the key; returns the lines to print (the next steps)."""
    if not _NAME.match(name):
        raise ConfigError(f"expected a cluster name of letters, digits, '.', '_', '-', got "
                          f"{name!r}", path="--name")
    hosts = parse_host_list(hosts_arg, "--hosts")
    ring1 = parse_host_list(ring1_arg, "--ring1") if ring1_arg else None
    if ring1 is not None and set(ring1) != set(hosts):
        raise ConfigError(f"--ring1 must give an address for every host of --hosts "
                          f"({', '.join(hosts)})", path="--ring1")
    key_path = key if key is not None else out.with_name("cluster.key")
    if out.exists():
        raise ConfigError(f"{out} already exists (ringfence does not overwrite files)",
                          file=str(out))
    if key_path.exists():
        raise ConfigError(f"{key_path} already exists (ringfence does not overwrite files): "
                          f"give --key, or remove it", file=str(key_path))
    text = cluster_text(name, hosts, ring1, store, INSTALLED_KEY)
    data, lines = parse_yaml(text, file=str(out))
    parse_cluster(data, file=str(out), lines=lines)  # never write what the loader refuses
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secrets.token_bytes(64))
    try:
        write_new_file(out, text)
    except ConfigError:
        key_path.unlink(missing_ok=True)  # all or nothing
        raise
    return _next_steps(out, key_path, list(hosts), store, two_rings=ring1 is not None)


def _next_steps(out: Path, key: Path, hosts: Sequence[str], store: str, *,
                two_rings: bool = True) -> list[str]:
    steps = [f"wrote {out} and {key} (mode 0600)", "", "next steps:"]
    if not two_rings:
        steps.append("  0. add a second heartbeat network on other NICs and switches (run init "
                     "again with --ring1, or fill in the commented ring1 entry): with one, "
                     "ringfence check fails, because losing ring0 cuts every host off")
    steps += [f"  1. fill in each host's cpus, memory and NIC MACs, then: ringfence check {out}",
             "  2. add fencing for every host (the commented block), then drill each one:"]
    steps += [f"       ringfence fence test {h} --config {out}" for h in hosts]
    if store == "etcd":
        steps.append("  3. run etcd on every host with TLS (docs/installation.md), the "
                     "certificates at the paths in store.tls")
    steps += [f"  4. copy {out} to /etc/ringfence/cluster.yaml and {key} to "
              f"/etc/ringfence/cluster.key (mode 0600) on every host",
              "  5. start the agents: ringfence agent --config /etc/ringfence/cluster.yaml "
              "--host NAME (or the systemd unit)",
              "  6. add VMs and alert routes, check again, and do a first failover drill"]
    return steps
