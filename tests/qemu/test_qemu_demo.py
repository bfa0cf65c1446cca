"""`ringfence demo --vms-kind qemu`: a power cut of a host whose real QEMU guest then runs
and answers on another host, with no split brain in the guests' own disk heartbeats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert ("vm_verified", "vm1") in kinds  # answered over HTTP on host2
    assert {n for n in netns.names() if n.startswith("rfq-")} == before
