"""`ringfence fuzz`: random clusters, random fault schedules, and the safety checker.

Each run draws a cluster (2-16 hosts unless fixed, 0-3 witnesses, store members, optional
power fencing, VMs, sometimes an anti-affinity pair) and a schedule of faults from every
fault kind the simulator models, in bursts (a fault often follows another within seconds:
cascades are where races hide). The real agent and manager run it; the checker looks for a VM
running on two hosts at once. On a violation the schedule is shrunk (events removed one at a
time while the violation persists, then VMs and witnesses the violation does not need) and
written as a scenario file that reproduces it.

Three kinds of fault are drawn only where they are honest, because no system can be safe
against them: a hang that also freezes the hardware watchdog is drawn only on hosts with a
fence agent that answers (not one drawn to hang); a forced start without quorum confirms down
only hosts that have a fence agent (an operator who declares a running host "down" with no
fence to prove it is the one case the design documents as the operator's responsibility); and
a host confirmed down for a forced start is not powered on again afterwards (the operator's
promise that it stays down: seed 004, "determine the node that you do not wish to operate and
power it down").

Deterministic: the same arguments give the same runs.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ringfence.sim.runner import SimulationResult, simulate
from ringfence.sim.scenario import parse_scenario

FAULT_KINDS = (
    "power_off", "power_on", "reboot", "shutdown", "hang", "resume", "link_down", "link_up",
    "link_flap", "partition", "heal", "witness_down", "witness_up", "rename_nics",
    "storage_fail", "storage_ok", "memory_errors", "vm_crash", "force_start", "maintenance",
    "migrate", "store_wipe", "agent_stall", "slow_calls", "lost_answers",
)
RARE = {"store_wipe": 0.1}  # drawn this much less often than the others (it ends the cluster)
TIME_KINDS = frozenset({"agent_stall", "slow_calls", "lost_answers"})
TIME_SHARE = 0.4  # runs in which calls take time: latencies, slow calls, stalls, lost answers


@dataclass
class FuzzOptions:
    runs: int = 100
    seed: int = 0
    hosts: int | None = None  # None: 2-16
    vms: int | None = None  # None: 1 to 3 x hosts in all
    duration: float = 180.0
    events: int = 12  # faults per run, on average
    kinds: tuple[str, ...] = FAULT_KINDS
    out: Path | None = None


@dataclass
class FuzzReport:
    runs: int = 0
    simulated_s: float = 0.0
    wall_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[tuple[int, str, Path | None]] = field(default_factory=list)


def _duration(seconds: float) -> str:
    return f"{round(seconds, 1):g}s"


def random_cluster(rng: random.Random, hosts: int | None, vms: int | None) -> dict[str, Any]:
    n_hosts = hosts or rng.randint(2, 16)
    names = [f"h{i}" for i in range(1, n_hosts + 1)]
    n_witnesses = rng.randint(0, 3)
    witnesses = [f"q{i}" for i in range(1, n_witnesses + 1)]
    networks: list[dict[str, Any]] = [{"name": "ring0", "role": "heartbeat"},
                                      {"name": "ring1", "role": "heartbeat"},
                                      {"name": "biz", "role": "vm"}]
    size = 5 if n_hosts + n_witnesses >= 5 and rng.random() < 0.5 else 3
    members = (witnesses + names)[: max(1, min(size, n_hosts + n_witnesses))]
    if len(members) % 2 == 0:
        members = members[:-1]
    fenced = [h for h in names if rng.random() < 0.5] if rng.random() < 0.6 else []
    n_vms = vms if vms is not None else rng.randint(1, 3 * n_hosts)
    cluster: dict[str, Any] = {
        "networks": networks,
        "hosts": [{"name": h, "cpus": 32, "memory": "128GiB"} for h in names],
        "witnesses": [{"name": w, "networks": ["biz"]} for w in witnesses],
        "store": {"members": members},
        "fencing": {h: _fence(rng) for h in fenced},
        "vms": [{"name": f"vm{i}", "cpus": rng.choice([1, 2, 4]),
                 "memory": rng.choice(["2GiB", "4GiB", "8GiB"]),
                 "host": names[i % n_hosts], "priority": rng.randint(0, 3) * 50}
                for i in range(1, n_vms + 1)],
    }
    if n_vms >= 2 and n_hosts >= 3 and rng.random() < 0.3:
        cluster["groups"] = [{"name": "monitors", "vms": ["vm1", "vm2"],
                              "rule": "anti_affinity"}]
        cluster["vms"][1]["host"] = names[1]
    return cluster


def _fence(rng: random.Random) -> dict[str, Any]:
    """A power fence; one in eight hangs (answers, and acts, only after 2-60 s)."""
    entry: dict[str, Any] = {"agent": "power", "duration": _duration(rng.uniform(0.2, 3.0))}
    if rng.random() < 0.125:
        entry["hang"] = _duration(rng.uniform(2.0, 60.0))
    return entry


def random_events(rng: random.Random, cluster: dict[str, Any], duration: float,
                  count: int, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    hosts = [h["name"] for h in cluster["hosts"]]
    witnesses = [w["name"] for w in cluster["witnesses"]]
    endpoints = hosts + witnesses
    vms = [v["name"] for v in cluster["vms"]]
    fenced = set(cluster["fencing"])
    # A frozen watchdog is made safe only by a fence that answers: not on hanging fences.
    answering = {h for h, f in cluster["fencing"].items() if "hang" not in f}
    members = list(cluster["store"]["members"])
    choices = [k for k in kinds if witnesses or not k.startswith("witness")]
    events: list[dict[str, Any]] = []
    t = rng.uniform(5, 30)
    last_host: str | None = None
    for _ in range(rng.randint(max(1, count // 2), count + count // 2)):
        if t >= duration - 1:
            break
        kind = rng.choice(choices)
        if kind in RARE and rng.random() >= RARE[kind]:
            kind = rng.choice([k for k in choices if k not in RARE] or choices)
        # A failing host shows several symptoms: half the time, the same host again.
        focus = last_host if last_host is not None and rng.random() < 0.5 else None
        event = _one_event(rng, kind, hosts, witnesses, endpoints, vms, fenced, focus,
                           answering, members)
        if event.get("host") in hosts:  # not "all" (slow calls everywhere)
            last_host = event["host"]
        event["at"] = _duration(t)
        events.append(event)
        undo = _undo(event)
        if undo is not None and rng.random() < 0.7:
            # Most faults end: a hang resumes, a partition heals, power returns.
            end = t + rng.choice([rng.uniform(0.5, 10.0), rng.uniform(5.0, duration / 3)])
            if end < duration - 1:
                events.append({**undo, "at": _duration(end)})
        # Bursts: half the time the next fault follows within seconds.
        t += rng.uniform(0.1, 8.0) if rng.random() < 0.5 else rng.uniform(5, duration / 4)
    return _keep_confirmed_down(sorted(events, key=lambda e: float(e["at"][:-1])))


def _keep_confirmed_down(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An operator who confirms a host down for a forced start keeps it down (seed 004:
    "determine the node that you do not wish to operate and power it down"): powering it on
    again while the forced copy runs without the store is the operator's second copy, not a
    fault ringfence can see. So no power_on or reboot of such a host follows."""
    down: set[str] = set()
    kept = []
    for event in events:
        if event["do"] in ("power_on", "reboot") and event.get("host") in down:
            continue
        if event["do"] == "force_start":
            down.update(event.get("confirm_down", []))
        kept.append(event)
    return kept


UNDO = {"maintenance": "maintenance", "hang": "resume", "partition": "heal",
        "link_down": "link_up", "power_off": "power_on", "storage_fail": "storage_ok",
        "witness_down": "witness_up", "shutdown": "power_on"}


def _undo(event: dict[str, Any]) -> dict[str, Any] | None:
    kind = UNDO.get(event["do"])
    if kind is None:
        return None
    keep = {k: v for k, v in event.items() if k in ("host", "network", "witness", "datastore")}
    if event["do"] == "maintenance":
        keep["on"] = False
    if kind == "heal":
        keep = {"networks": event["networks"]} if "networks" in event else {}
    return {"do": kind, **keep}


def _one_event(rng: random.Random, kind: str, hosts: list[str], witnesses: list[str],
               endpoints: list[str], vms: list[str], fenced: set[str],
               focus: str | None = None, answering: set[str] | None = None,
               members: list[str] | None = None) -> dict[str, Any]:
    host = focus or rng.choice(hosts)
    event: dict[str, Any] = {"do": kind}
    if kind in ("power_off", "power_on", "reboot", "shutdown", "resume", "rename_nics"):
        event["host"] = host
    elif kind == "hang":
        event["host"] = host
        if host in (fenced if answering is None else answering) and rng.random() < 0.5:
            event["watchdog"] = "frozen"
    elif kind in ("link_down", "link_up"):
        event.update(host=host, network=rng.choice(["ring0", "ring1", "biz", "all"]))
    elif kind == "link_flap":
        event.update(host=host, network=rng.choice(["ring0", "ring1", "biz"]),
                     count=rng.randint(1, 4))
    elif kind == "partition":
        if rng.random() < 0.5:  # one host cut off from everyone
            event["groups"] = [[host], sorted(e for e in endpoints if e != host)]
        else:
            shuffled = endpoints[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(shuffled) - 1)
            event["groups"] = [sorted(shuffled[:cut]), sorted(shuffled[cut:])]
        if rng.random() < 0.3:
            event["networks"] = [rng.choice(["ring0", "ring1", "biz"])]
    elif kind == "heal":
        pass
    elif kind in ("witness_down", "witness_up"):
        event["witness"] = rng.choice(witnesses)
    elif kind in ("storage_fail", "storage_ok"):
        event["host"] = host
    elif kind == "memory_errors":
        event.update(host=host, count=rng.randint(1, 20))
    elif kind == "vm_crash":
        event["vm"] = rng.choice(vms)
    elif kind == "maintenance":
        event.update(host=host, on=True)
    elif kind == "migrate":
        event.update(vm=rng.choice(vms), to=host)
    elif kind == "agent_stall":
        event.update(host=host, **{"for": _duration(rng.choice([
            rng.uniform(0.3, 3.0), rng.uniform(3.0, 15.0)]))})
    elif kind == "slow_calls":
        event.update(host=rng.choice([host, "all"]),
                     part=rng.choice(["store", "store", "hypervisor", "fence"]),
                     latency=_duration(rng.choice([0.3, 1.3, 2.5])),
                     **{"for": _duration(rng.uniform(1.0, 30.0))})
    elif kind == "lost_answers":
        event.update(host=host, **{"for": _duration(rng.uniform(0.5, 15.0))})
    elif kind == "store_wipe":
        if members and rng.random() < 0.7:
            event["member"] = rng.choice(members)
    elif kind == "force_start":
        others = [h for h in hosts if h != host]
        honest = all(h in fenced for h in others) and rng.random() < 0.7
        event.update(vm=rng.choice(vms), host=host, operator=rng.choice(["alice", "bob"]),
                     confirm_down=others if honest else [])
    return event


def random_time(rng: random.Random) -> dict[str, Any]:
    """How long calls and migrations take in a run that charges time (`sim:`)."""
    sim: dict[str, Any] = {"latency": {
        "store": {"min": "0s", "max": _duration(rng.choice([0.005, 0.05, 0.3, 1.3]))},
        "hypervisor": _duration(rng.choice([0.0, 0.01, 0.2, 1.0])),
        "fence": _duration(rng.choice([0.0, 0.1, 0.5])),
    }}
    if rng.random() < 0.5:  # slow migration networks: a migration outlives a lease
        sim["migration_bandwidth"] = rng.choice(["64MiB", "256MiB", "1GiB"])
    return sim


def make_scenario(rng: random.Random, options: FuzzOptions, index: int) -> dict[str, Any]:
    cluster = random_cluster(rng, options.hosts, options.vms)
    duration = options.duration
    timed = rng.random() < TIME_SHARE
    kinds = options.kinds if timed else tuple(k for k in options.kinds if k not in TIME_KINDS)
    data: dict[str, Any] = {
        "name": f"fuzz-{options.seed}-{index}",
        "description": "Drawn by ringfence fuzz.",
        "seed": rng.randint(0, 2**31 - 1),
        "duration": _duration(duration),
        "cluster": cluster,
        "events": random_events(rng, cluster, duration, options.events, kinds),
    }
    if timed:
        data["sim"] = random_time(rng)
    return data


def _violates(data: dict[str, Any]) -> SimulationResult | None:
    result = simulate(parse_scenario(data))
    return result if result.violations else None


def shrink(data: dict[str, Any], still_fails: Callable[[dict[str, Any]], bool]
           ) -> dict[str, Any]:
    """Remove events, then VMs and witnesses, one at a time, while the violation persists."""
    best = data
    changed = True
    while changed:
        changed = False
        for i in range(len(best["events"]) - 1, -1, -1):
            candidate = {**best, "events": best["events"][:i] + best["events"][i + 1:]}
            if still_fails(candidate):
                best, changed = candidate, True
        for section in ("vms", "witnesses"):
            for i in range(len(best["cluster"][section]) - 1, -1, -1):
                smaller = _without(best, section, i)
                if smaller is not None and still_fails(smaller):
                    best, changed = smaller, True
    return best


def _without(data: dict[str, Any], section: str, index: int) -> dict[str, Any] | None:
    cluster = dict(data["cluster"])
    items = list(cluster[section])
    name = items.pop(index)["name"]
    cluster[section] = items
    if section == "vms":
        if len(items) == 0:
            return None
        cluster["groups"] = [g for g in cluster.get("groups", []) if name not in g["vms"]]
        events = [e for e in data["events"] if e.get("vm") != name]
    else:
        members = [m for m in cluster["store"]["members"] if m != name]
        if not members:
            return None
        cluster["store"] = {"members": members}
        events = [e for e in data["events"] if e.get("witness") != name and not any(
            name in g for g in e.get("groups", []))]
    return {**data, "cluster": cluster, "events": events}


def _fails(data: dict[str, Any]) -> bool:
    try:
        return _violates(data) is not None
    except Exception:  # a shrunk candidate that is no longer a valid scenario
        return False


def fuzz(options: FuzzOptions, progress: Callable[[str], None] | None = None) -> FuzzReport:
    report = FuzzReport()
    started = time.perf_counter()
    for index in range(options.runs):
        rng = random.Random(options.seed * 1_000_003 + index)
        data = make_scenario(rng, options, index)
        report.faults.update(e["do"] for e in data["events"])
        result = simulate(parse_scenario(data))
        report.runs += 1
        report.simulated_s += options.duration
        if not result.violations:
            continue
        first = result.violations[0].text()
        minimal = shrink(data, _fails)
        minimal["description"] = (f"Found by ringfence fuzz --seed {options.seed}, run "
                                  f"{index}, then shrunk. Violation: {first}")
        path = None
        if options.out is not None:
            options.out.mkdir(parents=True, exist_ok=True)
            path = options.out / f"violation-{options.seed}-{index}.yaml"
            path.write_text(yaml.safe_dump(minimal, sort_keys=False, width=100))
        report.violations.append((index, first, path))
        if progress:
            progress(f"run {index}: {first}" + (f" -> {path}" if path else ""))
        break
    report.wall_s = time.perf_counter() - started
    return report
