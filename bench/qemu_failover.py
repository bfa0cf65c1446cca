"""Real QEMU guests: failover time after a host's power cut, and live-migration downtime.

Failover (``ringfence demo --vms-kind qemu``, 2 hosts, 2 guests, power cut of host1, whose
guest vm1 then restarts on host2): from the guest's last heartbeat record on its disk written
on host1 (the power cut: every record comes from the guest itself, every 200 ms) to

- fenced: the survivor's ``host_fenced`` (its fence agent confirmed host1 off);
- running: the first heartbeat record of vm1's new boot, on host2 (the guest's own I/O);
- answering: host2's agent verified that vm1 answers over HTTP (``vm_verified``).

Migration (`ringfence.guest.libvirtd.QemuLab`, 2 hosts, one guest, live-migrated back and
forth by ringfence's libvirt driver, ``migrateToURI3`` peer to peer): the downtime libvirt
reports for the completed job, the whole migration's time, and the longest gap between two
heartbeat records as the host sees them land on the disk (polled every 5 ms; a record is
written every 200 ms of guest time, so the gap is the downtime plus up to one period).

Software emulation (TCG) on a machine without usable KVM; figures are printed, never
asserted. Needs root and ``scripts/install-qemu``.

    python bench/qemu_failover.py [--failovers 1] [--migrations 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ringfence.guest.heartbeat import read_head
from ringfence.guest.libvirtd import QemuLab


def failover_trial() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rfq-bench-") as tmp:
        env = {**os.environ, "TMPDIR": tmp, "XDG_RUNTIME_DIR": tmp}
        done = subprocess.run(
            [sys.executable, "-m", "ringfence.cli", "demo", "--vms-kind", "qemu", "--hosts",
             "2", "--vms", "2", "--fault", "power_off", "--fault-target", "host1",
             "--fault-at", "15s", "--duration", "60s", "--port", "0", "--no-browser",
             "--json"], env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the demo failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        workdir = Path(summary["workdir"])
        records = [json.loads(line) for line in (workdir / "disk.jsonl").read_text().splitlines()
                   if line.strip()]
        vm1 = [r for r in records if r["vm"] == "vm1"]
        cut = max(r["t"] for r in vm1 if r["host"] == "host1")
        running = min(r["t"] for r in vm1 if r["host"] == "host2" and r["t"] > cut)
        journal = [json.loads(line) for line in
                   (workdir / "state" / "journal-host2.jsonl").read_text().splitlines()]
        fenced = min(e["t"] for e in journal if e["kind"] == "host_fenced" and e["t"] > cut)
        answering = min(e["t"] for e in journal
                        if e["kind"] == "vm_verified" and e.get("vm") == "vm1" and e["t"] > cut)
        return {"fenced_s": round(fenced - cut, 2), "running_s": round(running - cut, 2),
                "answering_s": round(answering - cut, 2),
                "split_brain": summary["split_brain"]}


class GapWatch:
    """The longest gap between heartbeat records landing on `disk`, while it runs."""

    def __init__(self, disk: Path) -> None:
        self.disk = disk
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GapWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last, since = None, time.monotonic()
        while not self._stop.wait(0.005):
            beat = read_head(self.disk)
            if beat is not None and (beat.boot, beat.seq) != last:
                now = time.monotonic()
                if last is not None:
                    self.longest = max(self.longest, now - since)
                last, since = (beat.boot, beat.seq), now


def migrations(count: int) -> list[dict[str, Any]]:
    results = []
    with QemuLab(2) as lab:
        guests = {"mig": lab.guest("mig", 1)}
        drivers = {h: lab.driver(h) for h in ("h1", "h2")}
        job = drivers["h1"].start("mig", 1)
        job.wait(120)
        disk = guests["mig"].disk
        deadline = time.monotonic() + 120
        while read_head(disk) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        first = read_head(disk)
        here, token = "h1", 1
        for _ in range(count):
            there = "h2" if here == "h1" else "h1"
            token += 1
            with GapWatch(disk) as watch:
                time.sleep(1)
                began = time.monotonic()
                job = drivers[here].migrate("mig", there, token)
                result = job.wait(300)
                took = time.monotonic() - began
                time.sleep(1)
            if result is None or not result.ok:
                raise SystemExit(f"migration {here} -> {there} failed: {result}")
            stats = job.progress.completed
            results.append({"from": here, "to": there,
                            "downtime_ms": int(stats.get("downtime", -1)),
                            "total_s": round(took, 2),
                            "heartbeat_gap_ms": round(watch.longest * 1000),
                            "sent_mib": int(stats.get("memory_processed", 0)) >> 20})
            here = there
        last = read_head(disk)
        if first is None or last is None or last.boot != first.boot:
            raise SystemExit("the guest restarted during the migrations")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failovers", type=int, default=1)
    parser.add_argument("--migrations", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces) and scripts/install-qemu")
    out: dict[str, Any] = {"failovers": [], "migrations": []}
    for n in range(args.failovers):
        trial = failover_trial()
        out["failovers"].append(trial)
        if not args.json:
            print(f"failover {n + 1}: fenced {trial['fenced_s']:.1f}s, running elsewhere "
                  f"{trial['running_s']:.1f}s, answering {trial['answering_s']:.1f}s after the "
                  f"power cut (split brain: {trial['split_brain']})", flush=True)
    if args.migrations:
        out["migrations"] = migrations(args.migrations)
        if not args.json:
            for m in out["migrations"]:
                print(f"migration {m['from']} -> {m['to']}: libvirt downtime "
                      f"{m['downtime_ms']} ms, heartbeat gap {m['heartbeat_gap_ms']} ms, "
                      f"{m['total_s']:.1f}s in all, {m['sent_mib']} MiB", flush=True)
            downs = [m["downtime_ms"] for m in out["migrations"]]
            print(f"migration downtime: median {statistics.median(downs):.0f} ms, max "
                  f"{max(downs)} ms over {len(downs)}")
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
