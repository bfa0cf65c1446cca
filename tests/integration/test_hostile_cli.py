"""Hostile and absurd input through the command line: every case ends quickly with exit 2, a
message naming the file and field (or option), and no traceback.

Each command runs in a subprocess with a time limit, so that a hang fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

SCENARIO: dict[str, Any] = {
    "name": "t",
    "duration": "60s",
    "cluster": {
        "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB"},
                  {"name": "h2", "cpus": 4, "memory": "8GiB"}],
    },
}

AGENT_CLUSTER: dict[str, Any] = {
    "name": "t",
    "networks": [{"name": "ring0", "role": "heartbeat", "port": 45415}],
    "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB", "hypervisor": "process",
               "interfaces": {"ring0": {"address": "127.0.3.1"}}},
              {"name": "h2", "cpus": 4, "memory": "8GiB", "hypervisor": "process",
               "interfaces": {"ring0": {"address": "127.0.3.2"}}}],
    "store": {"kind": "sqlite", "path": "STORE"},
}


def ringfence(*args: str, env: dict[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-m", "ringfence.cli", *args],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        pytest.fail(f"ringfence {' '.join(args)} did not end within {timeout} s")


def assert_bad_input(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in {result.stderr!r}"


def write(path: Path, data: dict[str, Any] | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def agent_cluster(tmp_path: Path, **changes: Any) -> Path:
    data = json.loads(json.dumps(AGENT_CLUSTER))
    data["store"]["path"] = str(tmp_path / "store.db")
    key = tmp_path / "cluster.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    data["key_file"] = str(key)
    data.update(changes)
    return write(tmp_path / "cluster.yaml", data)


BOMB = "\n".join(
    ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} ["
       + ", ".join([f"*{chr(ord('a') + i - 1)}"] * 9) + "]" for i in range(1, 9)]) + "\n"


@pytest.mark.parametrize("command", ["check", "simulate", "agent"])
def test_an_alias_bomb_is_refused_quickly(tmp_path: Path, command: str) -> None:
    bomb = write(tmp_path / "bomb.yaml", BOMB)
    args = {"check": ["check", str(bomb)], "simulate": ["simulate", str(bomb)],
            "agent": ["agent", "--config", str(bomb), "--host", "h1", "--state-dir",
                      str(tmp_path / "state"), "--watchdog", "process"]}[command]
    assert_bad_input(ringfence(*args, timeout=30), "bomb.yaml:", "alias")


@pytest.mark.parametrize("opening", ["[", "{k: "])
def test_deep_nesting_is_refused(tmp_path: Path, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    deep = write(tmp_path / "deep.yaml", "name: t\nx: " + opening * 3000 + "1"
                 + closing * 3000 + "\n")
    assert_bad_input(ringfence("check", str(deep), timeout=30), "deep.yaml:2", "nest")


def test_a_negative_seed_is_refused(tmp_path: Path) -> None:
    scenario = write(tmp_path / "s.yaml", SCENARIO)
    assert_bad_input(ringfence("simulate", str(scenario), "--seed", "-5"), "--seed")
    negative = write(tmp_path / "neg.yaml", {**SCENARIO, "seed": -3})
    assert_bad_input(ringfence("simulate", str(negative)), "neg.yaml:", "seed")
    assert_bad_input(ringfence("incident", "list", "--scenario", str(scenario), "--seed", "-1"),
                     "--seed")
    assert_bad_input(ringfence("fuzz", "--runs", "1", "--seed", "-1", "--out",
                               str(tmp_path / "f")), "--seed")


def test_absurd_durations_are_refused_not_run(tmp_path: Path) -> None:
    long = write(tmp_path / "long.yaml", {**SCENARIO, "duration": "99999999999999h"})
    assert_bad_input(ringfence("simulate", str(long), timeout=30), "long.yaml:", "duration")
    fast = json.loads(json.dumps(SCENARIO))
    fast["cluster"]["timing"] = {"heartbeat_interval": "0.000001s"}
    fast_path = write(tmp_path / "fast.yaml", fast)
    assert_bad_input(ringfence("simulate", str(fast_path), timeout=30),
                     "cluster.timing.heartbeat_interval")
    drift = write(tmp_path / "drift.yaml", {**SCENARIO, "sim": {"clock_drift_ppm": 1e12}})
    assert_bad_input(ringfence("simulate", str(drift), timeout=30), "sim.clock_drift_ppm")
    assert_bad_input(ringfence("fuzz", "--runs", "1", "--duration", "99999999999999h",
                               "--out", str(tmp_path / "f"), timeout=30), "--duration")
    assert_bad_input(ringfence("demo", "--duration", "99999999999999h", "--port", "0",
                               "--no-browser", timeout=30), "--duration")


def test_the_agent_refuses_an_address_that_is_not_an_ip(tmp_path: Path) -> None:
    hosts = json.loads(json.dumps(AGENT_CLUSTER["hosts"]))
    hosts[0]["interfaces"]["ring0"]["address"] = "not-an-ip"
    config = agent_cluster(tmp_path, hosts=hosts)
    result = ringfence("agent", "--config", str(config), "--host", "h1", "--state-dir",
                       str(tmp_path / "state"), "--watchdog", "process", timeout=30)
    assert_bad_input(result, "hosts[0].interfaces.ring0.address", "not-an-ip")


def test_a_libvirt_uri_without_libvirt_python_is_a_clear_start_up_error(tmp_path: Path) -> None:
    # A `libvirt` module that fails to import exactly as a missing one does.
    fake = tmp_path / "nolibvirt"
    fake.mkdir()
    (fake / "libvirt.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'libvirt'\", name='libvirt')\n")
    hosts = json.loads(json.dumps(AGENT_CLUSTER["hosts"]))
    hosts[0]["hypervisor"] = "qemu:///system"
    config = agent_cluster(tmp_path, hosts=hosts)
    pythonpath = os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])
    result = ringfence("agent", "--config", str(config), "--host", "h1", "--state-dir",
                       str(tmp_path / "state"), "--watchdog", "process",
                       env={"PYTHONPATH": pythonpath}, timeout=30)
    assert_bad_input(result, "hosts[0].hypervisor", "libvirt-python", "install")
