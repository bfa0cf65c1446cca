"""The guest image's pieces that need no QEMU: the initramfs archive format, the heartbeat
records read back from a disk image, and the domain XML."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ringfence.guest.domain import GuestSpec, domain_xml, mac_for
from ringfence.guest.heartbeat import (
    SECTOR,
    Beat,
    create_disk,
    one_writer_problems,
    read_head,
    read_ring,
)
from ringfence.guest.image import (
    INIT_SCRIPT,
    LOADER,
    MODULES,
    GuestImage,
    _initramfs,
    newc_archive,
    shared_libraries,
)


def newc_entries(data: bytes) -> list[tuple[str, int, bytes]]:
    """Parse a newc archive (independently of the writer)."""
    out, at = [], 0
    while True:
        assert data[at:at + 6] == b"070701"
        fields = [int(data[at + 6 + 8 * i:at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[at + 110:at + 110 + namesize - 1].decode()
        at += 110 + namesize
        at += -at % 4
        body = data[at:at + size]
        at += size
        at += -at % 4
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, body))


def test_newc_archive_round_trips_names_modes_and_contents() -> None:
    entries = [("bin", 0o40755, b""), ("init", 0o100755, b"#!/bin/sh\n"),
               ("bin/odd", 0o100644, b"x" * 7)]
    assert newc_entries(newc_archive(entries)) == entries


def test_init_loads_every_module_in_order_and_writes_with_o_direct() -> None:
    script = INIT_SCRIPT.read_text()
    assert "@MODULES@" in script and "oflag=direct" in script
    names = [n for n, _ in MODULES]
    assert names.index("virtio_ring") < names.index("virtio") < names.index("virtio_blk")


def write(disk: Path, slot: int, text: str) -> None:
    with open(disk, "r+b") as f:
        f.seek(slot * SECTOR)
        f.write(text.ljust(SECTOR - 1).encode() + b"\n")


def test_heartbeat_disk_reads_head_and_ring(tmp_path: Path) -> None:
    disk = tmp_path / "vm.hb"
    create_disk(disk, 16 * SECTOR)
    assert read_head(disk) is None and read_ring(disk) == []
    for seq in range(3):
        write(disk, 1 + seq % 15, f"RFHB1 vm1 abcd {seq} {1.5 + seq}")
    write(disk, 0, "RFHB1 vm1 abcd 2 3.5")
    write(disk, 9, "garbage that is no record")
    assert read_head(disk) == Beat(2, "abcd", "vm1", 3.5)
    assert [b.seq for b in read_ring(disk)] == [0, 1, 2]
    create_disk(disk, 16 * SECTOR)  # kept: a restarted VM carries on counting
    assert read_head(disk) is not None


def test_one_writer_at_a_time_and_two_copies_are_told_apart() -> None:
    handover = [Beat(s, "a", "vm", 0.0) for s in range(5)] + [
        Beat(s, "b", "vm", 0.0) for s in range(5, 9)]
    assert one_writer_problems(handover) == []
    both = [Beat(5, "a", "vm", 0.0), Beat(6, "b", "vm", 0.0), Beat(7, "a", "vm", 0.0)]
    assert any("two copies" in p for p in one_writer_problems(both))
    twice = [Beat(5, "a", "vm", 0.0), Beat(5, "b", "vm", 0.0)]
    assert one_writer_problems(twice)


def test_domain_xml_is_well_formed_with_disk_nic_and_kernel(tmp_path: Path) -> None:
    spec = GuestSpec("vm1", GuestImage(tmp_path), tmp_path / "vm1.hb", tmp_path / "vm1.log",
                     address="10.78.0.11/24", bridge="br0")
    root = ET.fromstring(domain_xml(spec))
    assert root.get("type") == "qemu" and root.findtext("name") == "vm1"
    assert root.findtext("os/kernel") == str(tmp_path / "vmlinux")
    assert "rfip=10.78.0.11/24" in (root.findtext("os/cmdline") or "")
    disk = root.find("devices/disk")
    assert disk is not None and disk.find("driver").get("cache") == "none"  # type: ignore[union-attr]
    assert root.find("devices/interface/mac").get("address") == mac_for("vm1")  # type: ignore[union-attr]
    channel = root.find("devices/channel/target")
    assert channel is not None and channel.get("name") == "org.qemu.guest_agent.0"
    no_net = ET.fromstring(domain_xml(GuestSpec("vm2", GuestImage(tmp_path), tmp_path / "d",
                                                tmp_path / "c")))
    assert no_net.find("devices/interface") is None


@pytest.mark.parametrize("change", [{"name": "bad name"}, {"address": "10.0.0.1"},
                                    {"address": "nope/24"}, {"virt": "xen"}])
def test_domain_xml_refuses_what_libvirt_would_misread(tmp_path: Path,
                                                       change: dict[str, str]) -> None:
    base = {"name": "vm1", "image": GuestImage(tmp_path), "disk": tmp_path / "d",
            "console": tmp_path / "c"}
    with pytest.raises(ValueError):
        domain_xml(GuestSpec(**{**base, **change}))  # type: ignore[arg-type]


def test_the_initramfs_holds_the_guest_agent_with_its_libraries_parents_first(
        tmp_path: Path) -> None:
    image = GuestImage(tmp_path)
    (tmp_path / "modules").mkdir()
    for name, _ in MODULES:
        (tmp_path / "modules" / f"{name}.ko").write_bytes(name.encode())
    agent = image.guest_agent
    (agent / "usr" / "sbin").mkdir(parents=True)
    (agent / "usr" / "sbin" / "qemu-ga").write_bytes(b"\x7fELF agent")
    (agent / "lib64").mkdir()
    (agent / "lib64" / "ld-linux-x86-64.so.2").write_bytes(b"loader")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"box")
    data, digest = _initramfs(image, busybox)
    entries = newc_entries(gzip.decompress(data))
    names = [name for name, _, _ in entries]
    assert ("usr/sbin/qemu-ga", 0o100755, b"\x7fELF agent") in entries
    assert names.index("usr") < names.index("usr/sbin") < names.index("usr/sbin/qemu-ga")
    assert names.index("lib64") < names.index("lib64/ld-linux-x86-64.so.2")
    assert len(names) == len(set(names))  # no directory twice
    (agent / "usr" / "sbin" / "qemu-ga").write_bytes(b"\x7fELF newer agent")
    assert _initramfs(image, busybox)[1] != digest  # a new agent rebuilds the initramfs


def test_shared_libraries_are_what_the_loader_finds_on_this_host() -> None:
    libraries = shared_libraries(Path("/bin/ls"))
    assert LOADER in libraries
    assert any(Path(p).name.startswith("libc.so") for p in libraries)
    assert all(Path(p).is_file() for p in libraries)
