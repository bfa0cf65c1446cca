"""`ringfence agent` and `ringfence status` through the command line: bad input is a clear
error with exit 2 and no traceback; a running cluster reports its state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import bootstrapped

CLUSTER = {
    "name": "t",
    "networks": [{"name": "ring0", "role": "heartbeat", "port": 45405}],
    "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB", "hypervisor": "process",
               "interfaces": {"ring0": {"address": "127.0.3.1"}}},
              {"name": "h2", "cpus": 4, "memory": "8GiB", "hypervisor": "process",
               "interfaces": {"ring0": {"address": "127.0.3.2"}}}],
    "store": {"kind": "sqlite", "path": "STORE"},
}


def ringfence(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringfence.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def write(tmp_path: Path, **changes: object) -> Path:
    data = json.loads(json.dumps(CLUSTER))
    data["store"]["path"] = str(tmp_path / "store.db")
    data.update(changes)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_agent_without_a_key_file_says_so(tmp_path: Path) -> None:
    result = ringfence("agent", "--config", str(write(tmp_path)), "--host", "h1",
                       "--state-dir", str(tmp_path / "state"), "--watchdog", "process")
    assert result.returncode == 2
    assert "key_file" in result.stderr and "Traceback" not in result.stderr


def test_agent_without_an_address_names_the_field(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    data = json.loads(json.dumps(CLUSTER))
    del data["hosts"][1]["interfaces"]["ring0"]["address"]
    path = write(tmp_path, key_file=str(key), hosts=data["hosts"])
    result = ringfence("agent", "--config", str(path), "--host", "h1",
                       "--state-dir", str(tmp_path / "state"), "--watchdog", "process")
    assert result.returncode == 2
    assert "hosts[1].interfaces.ring0.address" in result.stderr
    assert "Traceback" not in result.stderr


def test_agent_for_an_unknown_host_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    result = ringfence("agent", "--config", str(write(tmp_path, key_file=str(key))), "--host",
                       "h9", "--state-dir", str(tmp_path / "state"), "--watchdog", "process")
    assert result.returncode == 2 and "h9" in result.stderr and "Traceback" not in result.stderr


def test_status_of_a_store_nobody_joined_is_unhealthy(tmp_path: Path) -> None:
    path = write(tmp_path)
    bootstrapped(tmp_path / "store.db", "t")
    result = ringfence("status", "--config", str(path), "--json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["store"]["quorum"] is True
    assert {h["state"] for h in document["hosts"].values()} == {"never joined"}


def test_status_of_a_store_without_the_cluster_identity_says_so(tmp_path: Path) -> None:
    from ringfence.store.base import Put
    from ringfence.store.sqlite import SqliteStore

    path = write(tmp_path)
    with SqliteStore(str(tmp_path / "store.db")) as store:
        store.txn([], [Put("hosts/h1/info", {"incarnation": 3})])
    result = ringfence("status", "--config", str(path), "--json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["store"]["quorum"] is False
    assert "no cluster identity" in document["store"]["error"]


def test_vm_reset_forgets_where_a_vm_kept_dying(tmp_path: Path) -> None:
    from ringfence.store.base import Put
    from ringfence.store.sqlite import SqliteStore

    data = json.loads(json.dumps(CLUSTER))
    data["vms"] = [{"name": "app", "cpus": 1, "memory": "1GiB"}]
    path = write(tmp_path, vms=data["vms"])
    bootstrapped(tmp_path / "store.db", "t")
    with SqliteStore(str(tmp_path / "store.db")) as store:
        store.txn([], [Put("vms/app/owner", {"host": None, "avoid": ["h1", "h2"],
                                             "relocations": 2, "reason": "died"})])
    result = ringfence("vm", "reset", "app", "--config", str(path), "--operator", "ops")
    assert result.returncode == 0, result.stdout + result.stderr
    with SqliteStore(str(tmp_path / "store.db")) as store:
        kv = store.get("vms/app/owner")
    assert kv is not None and kv.value == {"host": None, "reset_by": "ops"}
    unknown = ringfence("vm", "reset", "nope", "--config", str(path))
    assert unknown.returncode == 2 and "nope" in unknown.stderr
