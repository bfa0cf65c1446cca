"""Shared by the lab benchmarks: a three-host lab cluster with one VM, driven trial by trial,
and the figures of one power-off measured from the lab's records.

Not a test: it prints figures and asserts nothing about speed.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any

from ringfence.lab.runner import LabOptions, LabRun
from ringfence.lab.truth import Write
from ringfence.sim.scenario import Event, parse_scenario
from ringfence.sim.world import JournalEntry

TIMINGS: dict[str, dict[str, str]] = {
    # ringfence's defaults
    "default": {"heartbeat_interval": "200ms", "host_lease_ttl": "6s", "watchdog_timeout": "4s"},
    # shorter leases for a LAN whose etcd elects in 0.5-1 s (the lab's: 50 ms heartbeat,
    # 500 ms election timeout); `ringfence check` accepts them without a timing warning
    "lan": {"heartbeat_interval": "200ms", "host_lease_ttl": "4s", "watchdog_timeout": "2500ms"},
}


def three_hosts(*, fencing: bool, duration: str = "24h", boot_time: str = "5s",
                vms: int = 1, hosts: int = 3, timing: str = "default") -> dict[str, Any]:
    names = [f"host{i + 1}" for i in range(hosts)]
    data: dict[str, Any] = {
        "name": "bench",
        "duration": duration,
        "sim": {"boot_time": boot_time},
        "cluster": {
            "timing": dict(TIMINGS[timing]),
            "networks": [{"name": "ring0", "role": "heartbeat"},
                         {"name": "ring1", "role": "heartbeat"}],
            "hosts": [{"name": n, "cpus": 16, "memory": "64GiB"} for n in names],
            "vms": [{"name": f"vm{i + 1}", "cpus": 1, "memory": "1GiB",
                     "host": names[i % hosts]} for i in range(vms)],
        },
    }
    if fencing:
        data["cluster"]["fencing"] = {n: {"agent": "power"} for n in names}
    return data


def open_lab(data: dict[str, Any], **options: Any) -> LabRun:
    return LabRun(parse_scenario(data), LabOptions(**options))


def where(writes: list[Write], vm: str, since: float) -> str | None:
    """The host that wrote for `vm` last, if it wrote after `since` (lab time)."""
    mine = [w for w in writes if w.vm == vm and w.t >= since]
    return mine[-1].host if mine else None


def settled(lab: LabRun, vm: str) -> str | None:
    """Every host is up and has registered since its boot, and `vm` writes: its host."""
    now = lab.records.now()
    for host in lab.records.hosts:
        if lab.records.power_at(host) != "up":
            return None
    entries, by = lab.journal_entries_now()
    if not all(joined_since_boot(lab, host, entries, by) for host in lab.records.hosts):
        return None
    return where(lab.writes(), vm, now - 0.5)


def joined_since_boot(lab: LabRun, host: str, entries: list[JournalEntry],
                      by: dict[int, str]) -> bool:
    """Has `host` journaled its `host_joined` since its last boot?"""
    booted = lab.records.power[host].times[-1]
    return any(e.kind == "host_joined" and by.get(id(e)) == host and e.t >= booted
               for e in entries)


@dataclass
class Trial:
    path: str
    victim: str
    detection: float  # first heartbeat_lost about the victim
    fenced: float  # fence_agent_ok (fence path) or host_fenced (watchdog path)
    running: float  # the VM's first disk write on another host
    answering: float  # vm_verified on the new host
    held: str = "neither"  # what died with the victim: neither, etcd leader, ringfence leader, both

    def row(self) -> str:
        return (f"{self.path:8} {self.victim:6} ({self.held:16}) detection "
                f"{self.detection:5.2f} s  fenced {self.fenced:5.2f} s  running "
                f"{self.running:5.2f} s  answering {self.answering:5.2f} s")


HELD_KINDS = ("neither", "etcd leader", "ringfence leader", "both")


def held_by(lab: LabRun, victim: str) -> str:
    """Which leaders `victim` holds right now: the ringfence leader (the newest
    `manager_elected` in the journals) and the etcd leader (asked of the members)."""
    ringfence = ringfence_leader(lab) == victim
    etcd = lab.store is not None and lab.store.leader() == victim
    return HELD_KINDS[int(etcd) + 2 * int(ringfence)]


def ringfence_leader(lab: LabRun) -> str | None:
    """The host of the newest `manager_elected` in the journals."""
    entries, _ = lab.journal_entries_now()
    elected = [e for e in entries if e.kind == "manager_elected"]
    return elected[-1].host if elected else None


class NotArranged(RuntimeError):
    """The cluster could not be brought into the state a trial needs; the message says what
    the journals show, and the bench goes on with the next trial."""


def unsettled(lab: LabRun, vm: str, since: float) -> str:
    """Why `settled` does not hold, from the records: hosts not up or not joined since their
    boot, where `vm` writes, and the journal's facts about `vm` since `since` (lab time)."""
    entries, by = lab.journal_entries_now()
    said = []
    for host in lab.records.hosts:
        power = lab.records.power_at(host)
        if power != "up":
            said.append(f"{host} is {power}")
        elif not joined_since_boot(lab, host, entries, by):
            said.append(f"{host} has not joined since its boot at "
                        f"{lab.records.power[host].times[-1]:.1f}s")
    writer = where(lab.writes(), vm, lab.records.now() - 0.5)
    said.append(f"{vm} writes on {writer or 'no host'}")
    facts = [f"{e.t:.1f}s {e.kind} ({by.get(id(e), '?')}): {e.text}" for e in entries
             if e.t >= since and (e.vm == vm or "refused" in e.kind)]
    return "; ".join(said) + ("; since the request: " + " | ".join(facts[-12:]) if facts
                             else "; nothing about it journaled since the request")


def arrange(lab: LabRun, vm: str, want: str, settle: float) -> None:
    """Make the host that runs `vm` hold what `want` (one of `HELD_KINDS`) says: the VM is
    live-migrated to (or away from) the ringfence leader, and etcd's leadership is moved to
    (or away from) that host. Then wait `settle` seconds, so that the leases restarted by
    etcd's leader change are renewed as usual before the trial. Raises NotArranged."""
    host = settled(lab, vm)
    leader = ringfence_leader(lab)
    assert host is not None and leader is not None
    others = [h for h in lab.records.hosts if h != leader]
    target = leader if want in ("ringfence leader", "both") else (
        host if host != leader else others[0])
    if target != host:
        asked = lab.records.now()
        lab.apply(Event(at=0.0, do="migrate", vm=vm, to=target))
        if not lab.wait_until(lambda: settled(lab, vm) == target, 60.0):
            raise NotArranged(f"{vm} did not move from {host} to {target} in 60 s: "
                              f"{unsettled(lab, vm, asked)}")
    assert lab.store is not None
    members = list(lab.store.members)
    etcd_to = target if want in ("etcd leader", "both") else next(
        m for m in members if m != target)
    if lab.store.leader() != etcd_to:
        lab.store.move_leader(etcd_to)
        if not lab.wait_until(lambda: lab.store is not None
                              and lab.store.leader() == etcd_to, 20.0):
            raise NotArranged(f"etcd's leadership did not move to {etcd_to} in 20 s")
    lab.wait(settle)


def first(entries: list[JournalEntry], kind: str, since: float, *, host: str | None = None,
          vm: str | None = None) -> float:
    for entry in entries:
        if entry.kind == kind and entry.t >= since and (host is None or entry.host == host) \
                and (vm is None or entry.vm == vm):
            return entry.t
    return float("nan")


def power_off_trial(lab: LabRun, vm: str, path: str, timeout: float = 90.0, *,
                    victim_kind: str | None = None, settle: float = 8.0) -> Trial:
    """Kill the host that runs `vm` (with `victim_kind`, one of `HELD_KINDS`, first arranged
    to hold that), wait until it runs elsewhere and answers, power the victim on again and
    wait until the cluster is settled once more."""
    if not lab.wait_until(lambda: settled(lab, vm) is not None, 120.0):
        raise RuntimeError("the cluster did not settle")
    lab.wait(2.0)
    if victim_kind is not None:
        arrange(lab, vm, victim_kind, settle)
    victim = settled(lab, vm)
    assert victim is not None
    held = held_by(lab, victim)
    kill = lab.records.now()
    lab.apply(Event(at=0.0, do="power_off", host=victim))

    def moved() -> bool:
        host = where(lab.writes(), vm, lab.records.now() - 0.5)
        if host in (None, victim):
            return False
        entries, _ = lab.journal_entries_now()
        return any(e.kind == "vm_verified" and e.vm == vm and e.t >= kill for e in entries)

    if not lab.wait_until(moved, timeout):
        raise RuntimeError(f"{vm} did not come back within {timeout:g}s")
    entries, _ = lab.journal_entries_now()
    writes = lab.writes()
    running = min(w.t for w in writes if w.vm == vm and w.host != victim and w.t >= kill)
    fenced = first(entries, "fence_agent_ok" if path == "fence" else "host_fenced", kill,
                   host=victim)
    trial = Trial(path, victim, first(entries, "heartbeat_lost", kill, host=victim) - kill,
                  fenced - kill, running - kill,
                  first(entries, "vm_verified", kill, vm=vm) - kill, held)
    lab.apply(Event(at=0.0, do="power_on", host=victim))
    return trial


def summary(values: list[float]) -> str:
    good = [v for v in values if v == v]
    if not good:
        return "n/a"
    return f"{statistics.median(good):.2f} s median, {max(good):.2f} s max"


def machine_line() -> str:
    load = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}; load average {load[0]:.1f} at the end")


def wall() -> float:
    return time.time()
