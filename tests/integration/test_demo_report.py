"""The report a newcomer gets from `ringfence demo`: no incident when nothing failed (the demo's
own teardown is planned work), and for a power cut one resolved incident whose per-VM downtime
is the one the VMs' own writes show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

DEMO_TIMEOUT = 240  # seconds: the run itself, plus start-up and teardown


def demo(tmp_path: Path, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "demo", "--port", "0", "--no-browser", "--json",
         *args], env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    report = Path(summary["report"])
    incidents = json.loads(report.with_name("incidents.json").read_text())
    return summary, incidents, report.read_text()


def test_a_run_without_a_fault_has_no_incident(tmp_path: Path) -> None:
    summary, incidents, report = demo(tmp_path, "--fault", "none", "--duration", "12s")
    assert summary["faults"] == []
    assert incidents == [], incidents
    assert "still down" not in report and "critical" not in report.lower()


def test_a_power_cut_is_one_resolved_incident_with_the_writes_downtime(tmp_path: Path) -> None:
    summary, incidents, report = demo(tmp_path, "--fault", "power_off", "--fault-at", "8s",
                                      "--duration", "40s")
    assert not summary["split_brain"]
    (incident,) = [i for i in incidents if i["severity"] != "warning"]
    assert incident["resolved_at"] is not None, incident
    victim = summary["faults"][0]["host"]
    assert victim in incident["hosts"]
    moved = {vm: info for vm, info in summary["vms"].items() if info["host_before"] == victim}
    assert moved, summary
    impacts = {v["vm"]: v for v in incident["vms"]}
    assert set(moved) <= set(impacts)
    for vm, info in moved.items():
        assert impacts[vm]["downtime_source"] == "the VM's own writes"
        assert abs(impacts[vm]["downtime_s"] - info["downtime_s"]) <= 0.2, (vm, impacts[vm],
                                                                            info)
    assert "the VM's own writes" in report
