"""`ringfence demo` stopped by SIGTERM (as `timeout` does) ends exactly as on Ctrl-C: every
process it started is stopped, its report is written, its pointer for `ringfence status` is
removed; and `ringfence status` never follows the pointer of a demo that is gone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ringfence.errors import ConfigError
from ringfence.status import find_config


def processes_under(marker: Path) -> list[int]:
    """Processes whose command line names `marker` (the demo's work directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(marker).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def test_timeout_stops_the_demo_as_ctrl_c_does(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    pointer = tmp_path / f"ringfence-demo-{os.getuid()}.path"
    try:
        result = subprocess.run(
            ["timeout", "20", sys.executable, "-m", "ringfence.cli", "demo", "--fault", "none",
             "--port", "0", "--no-browser"],
            env=env, capture_output=True, text=True, timeout=150, check=False)
        workdirs = list(tmp_path.glob("ringfence-demo-*[0-9]"))
        assert len(workdirs) == 1, (result.stdout, result.stderr)
        workdir = workdirs[0]
        assert processes_under(workdir) == [], "the demo left processes behind"
        assert "Traceback" not in result.stderr, result.stderr
        assert (workdir / "report.md").exists(), result.stdout + result.stderr
        assert "incident report:" in result.stdout
        assert not pointer.exists(), "the demo left its pointer behind"
    finally:
        for pid in processes_under(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_status_does_not_follow_the_pointer_of_a_demo_that_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("RINGFENCE_CONFIG", raising=False)
    monkeypatch.setattr("ringfence.status.DEFAULT_CONFIG", tmp_path / "no-such-cluster.yaml")
    config = tmp_path / "cluster.yaml"
    config.write_text("name: demo\n")
    pointer = tmp_path / f"ringfence-demo-{os.getuid()}.path"
    pointer.write_text(f"{config}\n")  # a demo that was killed (SIGKILL) left this
    with pytest.raises(ConfigError, match="no cluster file"):
        find_config(None)


def test_status_follows_the_pointer_of_a_running_demo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringfence.status import write_demo_pointer

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("RINGFENCE_CONFIG", raising=False)
    monkeypatch.setattr("ringfence.status.DEFAULT_CONFIG", tmp_path / "no-such-cluster.yaml")
    config = tmp_path / "cluster.yaml"
    config.write_text("name: demo\n")
    write_demo_pointer(config)  # this process is the "demo": alive
    assert find_config(None) == config


def test_journal_commands_find_a_running_demo_as_status_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from ringfence.cli import main
    from ringfence.status import write_demo_pointer

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr("ringfence.journal.report.DEFAULT_STATE_DIR", tmp_path / "no-state")
    config = tmp_path / "cluster.yaml"
    config.write_text("name: demo\nnetworks: [{name: ring0, role: heartbeat}]\n"
                      "hosts: [{name: h1, cpus: 1, memory: 1GiB}]\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "journal-h1.jsonl").write_text(json.dumps(
        {"v": 2, "t": 1780000000.0, "seq": 1, "by": "h1", "kind": "host_joined", "host": "h1",
         "text": "h1 joined with incarnation 1", "incarnation": 1}) + "\n")
    assert main(["journal", "export", "--json"]) == 2  # no demo yet: a clear error
    assert "no running demo" in capsys.readouterr().err
    write_demo_pointer(config)
    assert main(["journal", "export", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "host_joined"
    assert main(["incident", "list"]) == 0
    assert "no incident" in capsys.readouterr().out
