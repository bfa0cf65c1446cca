"""LinuxProbes on a fake sysfs tree (no root needed) and real write probes on tmp."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ringfence.config import ClusterConfig
from ringfence.core.ports import NicReading
from ringfence.probes.host import LinuxProbes, command_probe, file_probe

MAC0, MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:01:01", "52:54:00:00:02:01"


def config(datastores: list[dict[str, Any]] | None = None) -> ClusterConfig:
    datastores = datastores or []
    return ClusterConfig.model_validate({
        "networks": [{"name": "ring0", "role": "heartbeat"}, {"name": "biz", "role": "vm"},
                     {"name": "ceph", "role": "storage"}],
        "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB",
                   "interfaces": {"ring0": {"mac": MAC0, "name": "enp3s0f0"},
                                  "biz": {"mac": MAC1.upper()},
                                  "ceph": {"mac": MAC2}},
                   "datastores": [d["name"] for d in datastores]},
                  {"name": "h2", "cpus": 4, "memory": "8GiB"}],
        "datastores": datastores,
    })


def nic(root: Path, name: str, mac: str, *, carrier: str | None = "1", changes: int = 2,
        ifindex: int = 2, physical: bool = True) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "address").write_text(mac + "\n")
    if carrier is not None:
        (path / "carrier").write_text(carrier + "\n")
    (path / "carrier_changes").write_text(f"{changes}\n")
    (path / "ifindex").write_text(f"{ifindex}\n")
    if physical:
        (path / "device").mkdir()
    return path


def probes(tmp_path: Path, cfg: ClusterConfig | None = None, **kwargs: Any) -> LinuxProbes:
    return LinuxProbes(cfg or config(), "h1", sysfs=tmp_path / "net", edac=tmp_path / "mc",
                       **kwargs)


def by_mac(readings: tuple[NicReading, ...]) -> dict[str, NicReading]:
    return {reading.mac: reading for reading in readings}


# ------------------------------------------------------------------ NICs


def test_nics_are_found_by_mac(tmp_path: Path) -> None:
    net = tmp_path / "net"
    nic(net, "enp3s0f0", MAC0, changes=2)
    nic(net, "eno2", MAC1, changes=4)
    nic(net, "lo", "00:00:00:00:00:00", physical=False)
    nic(net, "eth9", "52:54:00:99:99:99")  # not ours
    reading = probes(tmp_path).read()
    found = by_mac(reading.nics)
    assert set(found) == {MAC0, MAC1}  # the ceph NIC is missing: left out, not invented
    assert found[MAC0] == NicReading(MAC0, "enp3s0f0", True, 2)
    assert found[MAC1] == NicReading(MAC1, "eno2", True, 4)


def test_renamed_nic_is_the_same_nic(tmp_path: Path) -> None:
    net = tmp_path / "net"
    nic(net, "enp3s0f0", MAC0)
    first = by_mac(probes(tmp_path).read().nics)[MAC0]
    (net / "enp3s0f0").rename(net / "ens1f0")  # udev named it differently after a reboot
    second = by_mac(probes(tmp_path).read().nics)[MAC0]
    assert (first.name, second.name) == ("enp3s0f0", "ens1f0")
    assert second.carrier


def test_carrier_loss_and_changes(tmp_path: Path) -> None:
    net = tmp_path / "net"
    path = nic(net, "eno2", MAC1, changes=2)
    nic(net, "eno3", MAC2, carrier=None)  # link down: reading carrier fails (EINVAL)
    p = probes(tmp_path)
    assert by_mac(p.read().nics)[MAC1].carrier
    assert by_mac(p.read().nics)[MAC2].carrier is False
    (path / "carrier").write_text("0\n")
    (path / "carrier_changes").write_text("3\n")
    lost = by_mac(p.read().nics)[MAC1]
    assert (lost.carrier, lost.carrier_changes) == (False, 3)
    (path / "carrier").unlink()
    (path / "carrier").mkdir()  # unreadable in another way (EISDIR): still no carrier
    assert by_mac(p.read().nics)[MAC1].carrier is False
    (path / "carrier_changes").unlink()  # an old kernel without the counter
    assert by_mac(p.read().nics)[MAC1].carrier_changes == 0


def test_shared_mac_prefers_named_then_physical(tmp_path: Path) -> None:
    net = tmp_path / "net"
    nic(net, "bond0", MAC1, ifindex=9, physical=False, carrier="1")
    nic(net, "eno2", MAC1, ifindex=3, carrier="0")
    nic(net, "eno2.100", MAC1, ifindex=10, physical=False)
    assert by_mac(probes(tmp_path).read().nics)[MAC1].name == "eno2"
    nic(net, "enp3s0f0", MAC0, ifindex=20, physical=False)
    nic(net, "eno1", MAC0, ifindex=2)
    assert by_mac(probes(tmp_path).read().nics)[MAC0].name == "enp3s0f0"  # the configured name


def test_missing_sysfs_reads_no_nics(tmp_path: Path) -> None:
    reading = probes(tmp_path).read()
    assert reading.nics == () and reading.datastores == {}
    assert reading.corrected_memory_errors == 0


# ------------------------------------------------------------------ EDAC


def test_corrected_memory_errors(tmp_path: Path) -> None:
    edac = tmp_path / "mc"
    for index, count in enumerate([3, 4]):
        (edac / f"mc{index}").mkdir(parents=True)
        (edac / f"mc{index}" / "ce_count").write_text(f"{count}\n")
    (edac / "mc2").mkdir()  # a controller without a counter counts 0
    (edac / "power").mkdir()
    assert probes(tmp_path).read().corrected_memory_errors == 7


# ------------------------------------------------------------------ write probes


def test_file_probe_on_writable_storage(tmp_path: Path) -> None:
    target = tmp_path / ".ringfence-probe"
    assert file_probe(target, "h1") is None
    assert target.read_text().startswith("ringfence probe h1 ")


def test_file_probe_on_unwritable_storage(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    error = file_probe(blocker / "probe", "h1")  # ENOTDIR: fails for root too
    assert error is not None and error.startswith("open for writing failed") and "ENOTDIR" in error
    if os.geteuid() != 0:  # root writes through permission bits: only checked as a user
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o500)
        try:
            error = file_probe(readonly / "probe", "h1")
            assert error is not None and "EACCES" in error
        finally:
            readonly.chmod(0o700)


def test_command_probe() -> None:
    assert command_probe(["true"], 5) is None
    failed = command_probe([sys.executable, "-c", "print('rbd: I/O error'); raise SystemExit(3)"],
                           5)
    assert failed is not None and "status 3" in failed and "rbd: I/O error" in failed
    started = time.monotonic()
    hung = command_probe(["sleep", "30"], 0.3)
    assert hung is not None and "timed out after 0.3s" in hung
    assert time.monotonic() - started < 10  # killed, not waited for
    missing = command_probe(["/nonexistent/rbd"], 5)
    assert missing is not None and "can not run" in missing


def test_datastore_probes_through_read(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = config([
        {"name": "nfs1", "probe": {"kind": "file", "path": str(tmp_path / "probe")}},
        {"name": "nfs2", "probe": {"kind": "file", "path": str(blocker / "probe")}},
        {"name": "rbd", "probe": {"kind": "command", "argv": ["true"]}},
        {"name": "rbd2", "probe": {"kind": "command", "argv": ["false"]}},
        {"name": "plain"},  # no probe: not in the reading
    ])
    stores = probes(tmp_path, cfg).read().datastores
    assert stores["nfs1"] is None and stores["rbd"] is None
    assert stores["nfs2"] is not None and "ENOTDIR" in stores["nfs2"]
    assert stores["rbd2"] is not None and "status 1" in stores["rbd2"]
    assert "plain" not in stores


def test_probes_run_in_the_background_at_most_every_interval(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = (f"import pathlib; p = pathlib.Path({str(counter)!r}); "
              "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')")
    cfg = config([{"name": "rbd", "probe": {"kind": "command",
                                            "argv": [sys.executable, "-c", script]}}])
    now = [0.0]
    p = probes(tmp_path, cfg, interval=10.0, clock=lambda: now[0])
    assert p.read().datastores == {"rbd": None}  # the first read waits for a first result
    for _ in range(5):
        p.read()
    time.sleep(0.3)
    assert counter.read_text() == "1"  # no new probe within the interval
    now[0] = 11.0
    p.read()
    deadline = time.monotonic() + 10
    while counter.read_text() != "2" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counter.read_text() == "2"


def test_a_failed_probe_is_confirmed_within_seconds_not_a_whole_interval(tmp_path: Path
                                                                         ) -> None:
    # Seed 003: storage found unwritable at boot must be confirmed (two failed probes in a
    # row) within seconds, so a failed probe is repeated after `retry_interval`.
    counter = tmp_path / "count"
    script = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
              "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1'); "
              "sys.exit(1)")
    cfg = config([{"name": "rbd", "probe": {"kind": "command",
                                            "argv": [sys.executable, "-c", script]}}])
    now = [0.0]
    p = probes(tmp_path, cfg, interval=10.0, clock=lambda: now[0])
    first = p.read().datastores["rbd"]
    assert first is not None and "status 1" in first
    now[0] = 1.5  # past the retry interval (1 s), far from the 10 s interval
    p.read()
    deadline = time.monotonic() + 10
    while counter.read_text() != "2" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counter.read_text() == "2"


def test_hanging_probe_does_not_hang_read(tmp_path: Path) -> None:
    cfg = config([{"name": "nfs", "probe": {"kind": "command", "argv": ["sleep", "3"]}}])
    now = [0.0]
    p = probes(tmp_path, cfg, timeout=5.0, first_wait=0.2, clock=lambda: now[0])
    started = time.monotonic()
    assert p.read().datastores == {"nfs": "write probe: no result yet"}
    assert time.monotonic() - started < 5  # bounded by first_wait, not by the probe
    now[0] = 6.0
    error = p.read().datastores["nfs"]
    assert error is not None and "has not finished after 6s" in error


def test_host_without_interfaces_or_datastores(tmp_path: Path) -> None:
    nic(tmp_path / "net", "eth0", MAC0)
    reading = LinuxProbes(config(), "h2", sysfs=tmp_path / "net", edac=tmp_path / "mc").read()
    assert reading.nics == () and reading.datastores == {}
