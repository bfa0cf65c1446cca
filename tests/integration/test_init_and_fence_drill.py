"""`ringfence init` writes a cluster file that passes `check` and a private key, and never
overwrites; `ringfence fence test HOST` drills a host's fence agent (here tests/fixtures/
fence_fake, which speaks the ClusterLabs protocol) and records the drill."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from ringfence.cli import main
from ringfence.config import load_cluster
from ringfence.fence.drill import drilled_hosts

FAKE = Path(__file__).resolve().parent.parent / "fixtures" / "fence_fake"
HOSTS = "hv1=10.0.0.1,hv2=10.0.0.2,hv3=10.0.0.3"


def test_init_writes_a_checked_file_and_a_private_key(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out, key = tmp_path / "cluster.yaml", tmp_path / "cluster.key"
    assert main(["init", "--name", "atl", "--hosts", HOSTS, "--ring1",
                 "hv1=10.0.1.1,hv2=10.0.1.2,hv3=10.0.1.3", "--out", str(out)]) == 0
    assert "ringfence fence test hv2" in capsys.readouterr().out
    config = load_cluster(out)
    assert [h.name for h in config.hosts] == ["hv1", "hv2", "hv3"]
    assert [n.name for n in config.networks] == ["ring0", "ring1"]
    assert config.store.kind == "etcd" and config.store.bootstrap == "hv1"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 64
    assert main(["check", str(out)]) == 0
    assert "Result: OK" in capsys.readouterr().out
    before = out.read_text()
    assert main(["init", "--name", "atl", "--hosts", HOSTS, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == before


def test_init_with_one_heartbeat_network_says_first_that_check_will_fail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.yaml"
    assert main(["init", "--name", "c", "--hosts", HOSTS, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "0. add a second heartbeat network" in said and "--ring1" in said
    assert main(["check", str(out)]) == 1
    assert "network ring0: no host survives" in capsys.readouterr().out


@pytest.mark.parametrize(("hosts", "message"), [
    ("hv1", "expected NAME=ADDRESS"), ("hv1=10.0.0.300", "not an IP address"),
    ("hv1=10.0.0.1,hv1=10.0.0.2", "given twice"),
])
def test_init_names_the_bad_host_list(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      hosts: str, message: str) -> None:
    assert main(["init", "--name", "c", "--hosts", hosts, "--out",
                 str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--hosts" in err and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir()), "nothing is written for bad input"


def cluster_with_fencing(tmp_path: Path, agent: str = str(FAKE)) -> Path:
    document = {
        "name": "drill", "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": h, "cpus": 4, "memory": "8GiB"} for h in ("hv1", "hv2")],
        "fencing": {"hv2": {"agent": agent,
                            "params": {"state_file": str(tmp_path / "power")}}},
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_fence_drill_status_then_off_and_on(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = cluster_with_fencing(tmp_path)
    state = tmp_path / "state"
    assert main(["fence", "test", "hv2", "--config", str(config), "--state-dir",
                 str(state), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["action"] for s in report["steps"]] == ["status"] and report["ok"]
    assert main(["fence", "test", "hv2", "--config", str(config), "--off", "--state-dir",
                 str(state), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["action"] for s in report["steps"]] == ["status", "off", "on", "status"]
    assert all(s["ok"] for s in report["steps"])
    assert (tmp_path / "power").read_text().strip() == "on"  # powered on again
    assert drilled_hosts(state) == {"hv2": True}


def test_fence_drill_failures_and_bad_input(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = cluster_with_fencing(tmp_path, agent=str(tmp_path / "no_such_agent"))
    assert main(["fence", "test", "hv2", "--config", str(config), "--state-dir",
                 str(tmp_path / "s")]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert drilled_hosts(tmp_path / "s") == {"hv2": False}
    assert main(["fence", "test", "hv1", "--config", str(config)]) == 2
    assert "fencing.hv1" in capsys.readouterr().err
    assert main(["fence", "test", "hv9", "--config", str(config)]) == 2
    assert "unknown host 'hv9'" in capsys.readouterr().err
