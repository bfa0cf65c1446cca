"""What needs no QEMU in the real-VM support: the QEMU demo's refusals on a machine that can
not run it, the migration target URIs the agent derives from the cluster file, and the lab's
argument checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.config import ClusterConfig
from ringfence.errors import ConfigError
from ringfence.guest.libvirtd import LabError, QemuLab


def cluster(*uris: str | None) -> ClusterConfig:
    return ClusterConfig.model_validate({
        "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": f"h{i + 1}", "cpus": 4, "memory": "8GiB", "hypervisor": uri}
                  for i, uri in enumerate(uris)],
        "vms": [],
    })


def test_migration_goes_to_the_target_s_remote_uri_else_over_ssh() -> None:
    pytest.importorskip("libvirt", reason="libvirt-python: scripts/install-libvirt")
    from ringfence.agent.runtime import migration_target_uri

    uri = migration_target_uri(cluster("qemu+tcp://10.79.0.1/system", "qemu:///system", None))
    assert uri("h1") == "qemu+tcp://10.79.0.1/system"
    assert uri("h2") == "qemu+ssh://h2/system"  # a local URI names no host to connect to
    assert uri("h3") == "qemu+ssh://h3/system"
    assert uri("elsewhere") == "qemu+ssh://elsewhere/system"


def test_the_qemu_demo_says_what_the_machine_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from ringfence import demo_qemu

    monkeypatch.setattr(demo_qemu.os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match="needs root"):
        demo_qemu.check_ready(fencing=True)
    monkeypatch.setattr(demo_qemu.os, "geteuid", lambda: 0)
    with pytest.raises(ConfigError, match="needs fencing"):
        demo_qemu.check_ready(fencing=False)


def test_the_lab_refuses_bad_sizes_and_too_deep_directories(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    with pytest.raises(ValueError):
        QemuLab(0, root=tmp_path)
    deep = tmp_path / ("d" * 90)
    lab = QemuLab(1, root=deep)
    monkeypatch.setattr("ringfence.guest.libvirtd.os.geteuid", lambda: 0)
    monkeypatch.setattr("ringfence.guest.libvirtd.shutil.which", lambda tool: f"/bin/{tool}")
    with pytest.raises(LabError, match="too deep"):
        lab.start()
    assert lab.namespaces() == []


def test_the_power_fence_agent_sees_a_missing_namespace_as_off(tmp_path: Path) -> None:
    from ringfence.fence import demo_power

    assert demo_power._namespace_alive("rfq-none-such-namespace") is False
