"""Secrets and the files the agent writes: a secret readable by others is refused at start-up
(exit 2, naming the field and the fix) unless `--allow-insecure-secrets`, which journals a loud
warning; journals, local state and the state directory are created for the owner only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringfence.agent.journal import FileJournal
from ringfence.agent.local_state import FileLocalState
from ringfence.fence.demo_power import pids_of

CLUSTER: dict[str, Any] = {
    "name": "t",
    "networks": [{"name": "ring0", "role": "heartbeat", "port": 45425}],
    "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB", "hypervisor": "process",
               "interfaces": {"ring0": {"address": "127.0.3.1"}}},
              {"name": "h2", "cpus": 4, "memory": "8GiB", "hypervisor": "process",
               "interfaces": {"ring0": {"address": "127.0.3.2"}}}],
    "store": {"kind": "sqlite", "path": "STORE", "bootstrap": "h1"},
}


def secret(path: Path, mode: int, content: bytes = b"s" * 32) -> str:
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


def cluster(tmp_path: Path, *, key_mode: int = 0o600, **changes: Any) -> Path:
    data = json.loads(json.dumps(CLUSTER))
    data["store"]["path"] = str(tmp_path / "store.db")
    data["key_file"] = secret(tmp_path / "cluster.key", key_mode, os.urandom(32))
    for key, value in changes.items():
        data[key] = value
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def agent(tmp_path: Path, config: Path, *extra: str, timeout: float = 30
          ) -> subprocess.CompletedProcess[str]:
    """Run an agent that is expected to refuse to start; one that starts is stopped (with
    everything it started) and fails the test."""
    args = [sys.executable, "-m", "ringfence.cli", "agent", "--config", str(config), "--host",
            "h1", "--state-dir", str(tmp_path / "state"), "--watchdog", "process", *extra]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        for pid in pids_of(tmp_path, "h1"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the agent started instead of refusing: {' '.join(args)}")
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def assert_refused(result: subprocess.CompletedProcess[str], field: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert field in result.stderr and "chmod 600" in result.stderr, result.stderr
    assert "--allow-insecure-secrets" in result.stderr, result.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_cluster_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    result = agent(tmp_path, cluster(tmp_path, key_mode=mode))
    assert_refused(result, "key_file")
    assert not (tmp_path / "state").exists(), "nothing may be started or created"


def test_every_secret_file_is_checked(tmp_path: Path) -> None:
    open_ = secret(tmp_path / "open.secret", 0o644)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"store": {"kind": "etcd", "endpoints": ["http://127.0.0.1:1"], "username": "u",
                    "password_file": open_}}, "store.password_file"),
        ({"store": {"kind": "etcd", "endpoints": ["https://127.0.0.1:1"],
                    "tls": {"cert_file": open_, "key_file": open_}}}, "store.tls.key_file"),
        ({"fencing": {"h2": {"agent": "fence_ipmilan",
                             "params": {"ip": "10.9.0.2", "password_file": open_}}}},
         "fencing.h2.params.password_file"),
    ]
    for changes, field in cases:
        assert_refused(agent(tmp_path, cluster(tmp_path, **changes)), field)


@contextlib.contextmanager
def running_agent(tmp_path: Path, config: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    log = (tmp_path / "agent.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ringfence.cli", "agent", "--config", str(config), "--host", "h1",
         "--state-dir", str(tmp_path / "state"), "--watchdog", "process", *extra],
        stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in pids_of(tmp_path, "h1"):  # the watchdog supervisor, if it outlived the agent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


def wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail("timed out")


def test_allow_insecure_secrets_runs_and_journals_a_loud_warning(tmp_path: Path) -> None:
    config = cluster(tmp_path, key_mode=0o644)
    journal = tmp_path / "state" / "journal-h1.jsonl"
    with running_agent(tmp_path, config, "--allow-insecure-secrets") as process:
        wait_for(lambda: (journal.exists() and "host_joined" in journal.read_text())
                 or process.poll() is not None)
        assert process.poll() is None, (tmp_path / "agent.log").read_text()
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    warnings = [e for e in entries if e["kind"] == "alert_sent" and "key_file" in e["text"]]
    assert warnings, entries
    assert "[critical]" in warnings[0]["text"] and "chmod 600" in warnings[0]["text"]


def test_the_agent_creates_its_files_for_its_owner_only(tmp_path: Path) -> None:
    config = cluster(tmp_path)
    state = tmp_path / "state"
    journal = state / "journal-h1.jsonl"
    old = os.umask(0o022)
    try:
        with running_agent(tmp_path, config) as process:
            wait_for(lambda: (journal.exists() and (state / "local-h1").exists())
                     or process.poll() is not None)
            assert process.poll() is None, (tmp_path / "agent.log").read_text()
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "local-h1").stat().st_mode) == 0o700


def test_journal_and_local_state_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        journal = FileJournal(tmp_path / "j" / "journal-h1.jsonl", "h1", echo=None)
        journal.record("host_alive", host="h1")
        local = FileLocalState(tmp_path / "local-h1")
        local.put("held", {"vms": {}})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "j" / "journal-h1.jsonl").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "local-h1").stat().st_mode) == 0o700
    assert stat.S_IMODE(local.path("held").stat().st_mode) == 0o600


def test_an_existing_journal_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "journal-h1.jsonl"
    path.write_text("")
    path.chmod(0o644)
    FileJournal(path, "h1", echo=None).record("host_alive", host="h1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
