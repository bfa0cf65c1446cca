"""Failover time of a real cluster on this machine: host death -> detection, and host death ->
its VMs running (and answering) on other hosts.

Each trial starts `ringfence demo`'s cluster (3 agents as processes, UDP heartbeats over
loopback, heartbeat 200 ms, host lease TTL 6 s, watchdog 4 s, VMs as processes), waits for a
steady state, then kills the busiest host outright (SIGKILL of its agent, VMs and watchdog: a
power cut). Measured from the kill, on the same wall clock:
- detection: the first `heartbeat_lost` about the dead host journaled by a survivor;
- VMs back: the last of the dead host's VMs to write to its disk again from another host
  (the VM's own I/O: it runs);
- answering: the last of them to be verified by an HTTP request from its new agent.
Paths: `fence` (each host has the demo's power fence agent: the fast path) and `watchdog` (no
fence agent: lease expiry + watchdog_timeout + clock_margin). Stores: SQLite and etcd (a
single local etcd member). Prints median and max over `--trials` trials per combination.

    python bench/failover.py [--trials 10] [--stores sqlite etcd] [--paths fence watchdog]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from ringfence.demo import Demo, DemoOptions, split_brains
from ringfence.etcd_local import ETCD, Cluster, make_cluster, wipe
from ringfence.store.etcd import EtcdStore


def trial(workdir: Path, *, fencing: bool, etcd: list[str] | None) -> dict[str, float]:
    demo = Demo(DemoOptions(hosts=3, vms=6, port=0, browser=False, as_json=True,
                            fencing=fencing, workdir=workdir, etcd_endpoints=etcd))
    demo.write_cluster()
    for host in demo.hosts:
        demo.start_host(host)
    try:
        deadline = time.time() + 60
        while len(demo.placement_now()) < len(demo.vms):
            if time.time() > deadline:
                raise RuntimeError("the cluster did not start")
            time.sleep(0.1)
        time.sleep(3.0)
        demo.inject("power_off")
        fault = demo.faults[0]
        victim = fault.host
        moved = {r["vm"] for r in demo.writes() if r["host"] == victim}
        deadline = time.time() + 60
        while True:
            placed = demo.placement_now(window=0.5)
            if all(placed.get(vm) not in (None, victim) for vm in moved):
                break
            if time.time() > deadline:
                raise RuntimeError("the VMs did not come back")
            demo.handle_power_requests()
            time.sleep(0.05)
        time.sleep(1.0)  # let verification finish
        records = demo.writes()
        back = max(min(r["t"] for r in records if r["vm"] == vm and r["host"] != victim
                       and r["t"] > fault.wall) for vm in moved)
        journal = demo.journal()
        detected = min(e["t"] for e in journal
                       if e["kind"] == "heartbeat_lost" and e["host"] == victim
                       and e["t"] >= fault.wall)
        verified = [e["t"] for e in journal if e["kind"] == "vm_verified"
                    and e["vm"] in moved and e["t"] > fault.wall]
        if split_brains(records):
            raise RuntimeError(f"split brain: {split_brains(records)}")
        return {"detection": detected - fault.wall, "back": back - fault.wall,
                "answering": (max(verified) - fault.wall) if verified else float("nan")}
    finally:
        demo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "etcd"])
    parser.add_argument("--paths", nargs="+", default=["fence", "watchdog"])
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {args.trials} trials each")
    print(f"{'store':<7} {'path':<9} {'detection med/max':>19} {'VMs back med/max':>19} "
          f"{'answering med/max':>19}")
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-") as tmp:
        base = Path(tmp)
        etcd: Cluster | None = None
        if "etcd" in args.stores and ETCD is not None:
            (base / "etcd").mkdir()
            etcd = make_cluster(base / "etcd", 1)
            etcd.start()
            with EtcdStore(etcd.endpoints, timeout=1.0) as store:
                etcd.wait_ready(store)
        try:
            for store in args.stores:
                if store == "etcd" and etcd is None:
                    print("etcd     (skipped: no etcd binary)")
                    continue
                for path in args.paths:
                    results = []
                    for i in range(args.trials):
                        if store == "etcd" and etcd is not None:
                            wipe(etcd.endpoints[0])  # every trial starts from an empty store
                        workdir = base / f"{store}-{path}-{i}"
                        results.append(trial(workdir, fencing=path == "fence",
                                             etcd=etcd.endpoints if store == "etcd" and etcd
                                             else None))
                    cells = []
                    for key in ("detection", "back", "answering"):
                        values = [r[key] for r in results]
                        cells.append(f"{statistics.median(values):7.2f}s /{max(values):6.2f}s")
                    print(f"{store:<7} {path:<9} {cells[0]:>19} {cells[1]:>19} {cells[2]:>19}",
                          flush=True)
        finally:
            if etcd is not None:
                etcd.stop()


if __name__ == "__main__":
    main()
