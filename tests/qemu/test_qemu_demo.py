"""`ringfence demo --vms-kind qemu`: a power cut of a host whose real QEMU guest then runs
and answers on another host, with no split brain in the guests' own disk heartbeats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from qemu_helpers import wait_for

from ringfence.lab import netns

pytestmark = pytest.mark.qemu


def test_a_power_cut_host_s_guest_runs_and_answers_elsewhere(qemu_ready: None,
                                                              tmp_path: Path) -> None:
    before = {n for n in netns.names() if n.startswith("rfq-")}
    env = {**os.environ, "TMPDIR": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "demo", "--vms-kind", "qemu", "--hosts", "2",
         "--vms", "2", "--fault", "power_off", "--fault-target", "host1", "--fault-at", "15s",
         "--duration", "60s", "--port", "0", "--no-browser", "--json"],
        env=env, capture_output=True, text=True, timeout=420, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["split_brain"] is False
    assert summary["faults"][0]["kind"] == "power_off"
    assert summary["faults"][0]["host"] == "host1"
    vm1 = summary["vms"]["vm1"]
    assert (vm1["host_before"], vm1["host_after"]) == ("host1", "host2")
    assert summary["vms"]["vm2"]["host_after"] == "host2"
    journal = (Path(summary["workdir"]) / "state" / "journal-host2.jsonl").read_text()
    kinds = [(e["kind"], e.get("vm")) for e in map(json.loads, journal.splitlines())]
    assert ("host_fenced", None) in kinds
    assert ("vm_verified", "vm1") in kinds  # its guest agent answered guest-ping on host2
    assert ("vm_verified", "vm2") in kinds  # answered over HTTP
    assert {n for n in netns.names() if n.startswith("rfq-")} == before


def placed(workdir: Path, vm: str, within: float = 2.0) -> str | None:
    """The host whose QEMU wrote `vm`'s latest heartbeat, if it came within `within` s."""
    try:
        lines = (workdir / "disk.jsonl").read_text().splitlines()
    except OSError:
        return None
    mine = [json.loads(line) for line in lines if f'"vm": "{vm}"' in line]
    return mine[-1]["host"] if mine and mine[-1]["t"] > time.time() - within else None


def test_a_killed_guest_restarts_in_place_then_a_drain_live_migrates_it(
        qemu_ready: None, tmp_path: Path) -> None:
    """One demo run: vm1's QEMU is killed (the demo's vm_crash fault) and host1's agent
    restarts it there; then host1 goes into maintenance and vm1 is live-migrated to host2
    without a restart (the same boot, its counter going on)."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "ringfence.cli", "demo", "--vms-kind", "qemu", "--hosts", "2",
         "--vms", "2", "--fault", "vm_crash", "--fault-at", "12s", "--duration", "75s",
         "--port", "0", "--no-browser", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workdir = tmp_path / f"ringfence-demo-{demo.pid}"
    try:
        first = wait_for("vm1 running on host1", lambda: placed(workdir, "vm1") == "host1"
                         and records(workdir, "vm1")[-1]["token"], 200)
        wait_for("vm1 restarted on host1 after its crash", lambda: (
            placed(workdir, "vm1") == "host1"
            and records(workdir, "vm1")[-1]["token"] != first), 120)
        drain = subprocess.run(
            [sys.executable, "-m", "ringfence.cli", "host", "maintenance", "host1", "on",
             "--config", str(workdir / "cluster.yaml")],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert drain.returncode == 0, drain.stdout + drain.stderr
        wait_for("vm1 running on host2", lambda: placed(workdir, "vm1") == "host2", 120)
        out, err = demo.communicate(timeout=300)
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.communicate(timeout=120)
    assert demo.returncode == 0, out[-2000:] + err[-2000:]
    assert json.loads(out)["split_brain"] is False
    vm1 = records(workdir, "vm1")
    boots = [r["token"] for r in vm1]
    crash = boots.index(next(b for b in boots if b != first))
    assert {r["host"] for r in vm1[:crash]} == {"host1"}
    restarted = vm1[crash:]
    assert {r["token"] for r in restarted} == {restarted[0]["token"]}  # no restart after
    hosts = [r["host"] for r in restarted]
    moved = hosts.index("host2")
    assert set(hosts[:moved]) == {"host1"} and set(hosts[moved:]) == {"host2"}
    seqs = [r["seq"] for r in vm1]
    assert seqs == sorted(seqs)  # one counter: across the restart and the move
    journal = [e for e in map(json.loads, (workdir / "state" / "journal-host1.jsonl")
                              .read_text().splitlines()) if e.get("vm") == "vm1"]
    kinds = [e["kind"] for e in journal]
    assert "vm_crashed" in kinds and "vm_restarted" in kinds
    # Why, where libvirt's life-cycle event came before the listing that showed it gone.
    assert all(e.get("reason") in (None, "its QEMU process died")
               for e in journal if e["kind"] == "vm_crashed"), journal
    # The pause libvirt measured is journaled with the move.
    assert any(e["kind"] == "vm_migrated" and e["target"] == "host2"
               and 0 < (e.get("duration") or 0) < 5 for e in journal)


def records(workdir: Path, vm: str) -> list[dict[str, Any]]:
    """The demo's ground-truth records of `vm` (the guest's heartbeats as the watcher saw
    them land on its disk, with the host whose QEMU ran it)."""
    try:
        lines = (workdir / "disk.jsonl").read_text().splitlines()
    except OSError:
        return [{"token": None, "host": None, "seq": -1}]
    mine = [json.loads(line) for line in lines if f'"vm": "{vm}"' in line]
    return mine or [{"token": None, "host": None, "seq": -1}]
