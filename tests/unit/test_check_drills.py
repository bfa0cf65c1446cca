"""`ringfence check` reminds of fence drills: a host whose fencing was never drilled, whose last
drill failed or is old, or ran `status` only; from the records `ringfence fence test` writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ringfence.check import (
    DRILL_MAX_AGE_DAYS,
    DrillRecords,
    Finding,
    analyse,
    load_any,
    read_drills,
)
from ringfence.cli import main
from ringfence.fence.drill import DRILLS_DIR, DrillRecord

ROOMY = """\
name: drills
networks:
  - {name: ring0, role: heartbeat}
  - {name: ring1, role: heartbeat}
hosts:
  - {name: hv1, cpus: 32, memory: 128GiB}
  - {name: hv2, cpus: 32, memory: 128GiB}
  - {name: hv3, cpus: 32, memory: 128GiB}
fencing:
  hv1: {agent: fence_ipmilan}
  hv2: {agent: fence_ipmilan}
  hv3: {agent: fence_ipmilan}
vms:
  - {name: erp, cpus: 8, memory: 32GiB, host: hv1}
"""
NOW = 1_800_000_000.0
DAY = 86400.0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def drill_findings(tmp_path: Path, records: dict[str, DrillRecord] | None,
                   text: str = ROOMY) -> list[Finding]:
    config = load_any(write(tmp_path, text))
    report = analyse(config, DrillRecords("/var/lib/ringfence", records, NOW))
    return [f for f in report.findings if f.kind == "fence_drill"]


def test_every_host_never_drilled_gets_a_warning_with_the_command(tmp_path: Path) -> None:
    found = drill_findings(tmp_path, {})
    assert [(f.severity, f.failure) for f in found] == [
        ("warning", "host hv1"), ("warning", "host hv2"), ("warning", "host hv3")]
    for finding, host in zip(found, ("hv1", "hv2", "hv3"), strict=True):
        assert finding.text.startswith("fencing was never drilled")
        assert f"`ringfence fence test {host}`" in finding.text
        assert "/var/lib/ringfence/fence-drills" in finding.text


def test_a_recent_passed_off_drill_says_nothing(tmp_path: Path) -> None:
    records = {h: DrillRecord(h, NOW - 3 * DAY, off=True, ok=True) for h in ("hv1", "hv2", "hv3")}
    assert drill_findings(tmp_path, records) == []


def test_failed_old_and_status_only_drills(tmp_path: Path) -> None:
    records = {
        "hv1": DrillRecord("hv1", NOW - 2 * DAY, off=True, ok=False),
        "hv2": DrillRecord("hv2", NOW - (DRILL_MAX_AGE_DAYS + 10) * DAY, off=True, ok=True),
        "hv3": DrillRecord("hv3", NOW - 600.0, off=False, ok=True),
    }
    by_host = {f.failure: f for f in drill_findings(tmp_path, records)}
    assert by_host["host hv1"].severity == "warning"
    assert "failed its last drill (2 days ago)" in by_host["host hv1"].text
    assert "`ringfence fence test hv1`" in by_host["host hv1"].text
    assert by_host["host hv2"].severity == "warning"
    assert f"{DRILL_MAX_AGE_DAYS + 10} days ago" in by_host["host hv2"].text
    assert by_host["host hv3"].severity == "info"
    assert "today with `status` only" in by_host["host hv3"].text
    assert "`ringfence fence test hv3 --off`" in by_host["host hv3"].text


def test_no_state_directory_is_one_note_and_no_drills_given_is_nothing(tmp_path: Path) -> None:
    found = drill_findings(tmp_path, None)
    assert [(f.severity, f.failure) for f in found] == [("info", None)]
    assert "fence drills not checked" in found[0].text
    report = analyse(load_any(write(tmp_path, ROOMY)))
    assert not [f for f in report.findings if f.kind == "fence_drill"]


def test_hosts_without_a_real_fence_agent_are_not_reminded(tmp_path: Path) -> None:
    text = ROOMY.replace("  hv1: {agent: fence_ipmilan}\n", "") \
                .replace("hv2: {agent: fence_ipmilan}", "hv2: {agent: power}")
    assert [f.failure for f in drill_findings(tmp_path, {}, text)] == ["host hv3"]
    every_power = text.replace("hv3: {agent: fence_ipmilan}", "hv3: {agent: power}")
    assert drill_findings(tmp_path, None, every_power) == []


def test_reads_the_records_fence_test_writes_and_skips_broken_ones(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / DRILLS_DIR).mkdir(parents=True)
    (state / DRILLS_DIR / "hv1.json").write_text(json.dumps(
        {"host": "hv1", "at": time.time() - DAY, "off": True, "ok": True, "steps": []}))
    (state / DRILLS_DIR / "hv2.json").write_text("{not json")
    (state / DRILLS_DIR / "hv3.json").write_text(json.dumps({"host": "hv3"}))  # no time
    drills = read_drills(state)
    assert drills.records is not None and set(drills.records) == {"hv1"}
    assert read_drills(tmp_path / "absent").records is None


def test_the_command_reminds_with_state_dir(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, ROOMY)
    state = tmp_path / "state"
    state.mkdir()
    assert main(["check", str(path), "--state-dir", str(state)]) == 0  # warnings, not errors
    out = capsys.readouterr().out
    assert "WARNING  host hv2: fencing was never drilled" in out
    assert main(["check", str(path), "--state-dir", str(state), "--json"]) == 0
    kinds = [f["kind"] for f in json.loads(capsys.readouterr().out)["findings"]
             if f["severity"] == "warning"]
    assert kinds.count("fence_drill") == 3
    assert main(["check", str(path), "--state-dir", str(tmp_path / "no" / "such")]) == 2
    assert "--state-dir" in capsys.readouterr().err
