"""The libvirt domain XML of a ringfence guest (`ringfence.guest.image`): direct kernel boot
of the uncompressed kernel, 96 MiB, one vCPU, the heartbeat disk as a virtio disk with
cache='none' (needed both for the records to reach the image file at once and for libvirt to
call a live migration on shared storage safe), a virtio NIC on a bridge, the serial console to
a file, the virtio-serial channel ``org.qemu.guest_agent.0`` for the guest's ``qemu-ga`` (libvirt
picks the socket on the host), and no USB, balloon or graphics.

``virt='qemu'`` is software emulation (TCG), the only kind that boots in reasonable time on a
machine without usable KVM; ``'kvm'`` on real virtualisation hosts.

Failure semantics: `ValueError` for a name or address libvirt would reject or misread.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ringfence.guest.image import GuestImage

__all__ = ["GuestSpec", "domain_uuid", "domain_xml", "mac_for"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def mac_for(name: str) -> str:
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) for VM `name`."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def domain_uuid(name: str) -> str:
    """The same UUID for VM `name` on every host: libvirt refuses an incoming migration of a
    domain whose name another host's definition has under another UUID."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://ringfence.invalid/vm/{name}"))


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """One guest: `disk` is its heartbeat disk on shared storage, `console` a file the serial
    console is appended to, `address` its IPv4 address with prefix (``10.0.0.5/24``) or None
    for no network."""

    name: str
    image: GuestImage
    disk: Path
    console: Path
    address: str | None = None
    bridge: str = "rfqbr0"
    memory_mib: int = 96
    virt: str = "qemu"


def domain_xml(spec: GuestSpec) -> str:
    if not _NAME.fullmatch(spec.name):
        raise ValueError(f"not a usable VM name: {spec.name!r}")
    if spec.virt not in ("qemu", "kvm"):
        raise ValueError(f"virt must be 'qemu' or 'kvm', not {spec.virt!r}")
    cmdline = f"console=ttyS0 quiet panic=-1 rfname={spec.name}"
    nic = ""
    if spec.address is not None:
        ipaddress.IPv4Interface(spec.address)  # ValueError if it is not A.B.C.D/NN
        if "/" not in spec.address:
            raise ValueError(f"address needs a prefix length, e.g. 10.0.0.5/24: "
                             f"{spec.address!r}")
        cmdline += f" rfip={spec.address}"
        nic = (f"    <interface type='bridge'>\n"
               f"      <source bridge={quoteattr(spec.bridge)}/>\n"
               f"      <mac address='{mac_for(spec.name)}'/>\n"
               f"      <model type='virtio'/>\n"
               f"    </interface>\n")
    cpu = "  <cpu mode='host-passthrough'/>\n" if spec.virt == "kvm" else ""
    return (
        f"<domain type='{spec.virt}'>\n"
        f"  <name>{escape(spec.name)}</name>\n"
        f"  <uuid>{domain_uuid(spec.name)}</uuid>\n"
        f"  <memory unit='MiB'>{int(spec.memory_mib)}</memory>\n"
        f"  <vcpu>1</vcpu>\n"
        f"  <os>\n"
        f"    <type arch='x86_64' machine='pc'>hvm</type>\n"
        f"    <kernel>{escape(str(spec.image.kernel))}</kernel>\n"
        f"    <initrd>{escape(str(spec.image.initrd))}</initrd>\n"
        f"    <cmdline>{escape(cmdline)}</cmdline>\n"
        f"  </os>\n"
        f"{cpu}"
        f"  <features><acpi/></features>\n"
        f"  <clock offset='utc'/>\n"
        f"  <on_poweroff>destroy</on_poweroff>\n"
        f"  <on_reboot>restart</on_reboot>\n"
        f"  <on_crash>destroy</on_crash>\n"
        f"  <devices>\n"
        f"    <controller type='usb' model='none'/>\n"
        f"    <disk type='file' device='disk'>\n"
        f"      <driver name='qemu' type='raw' cache='none' io='native'/>\n"
        f"      <source file={quoteattr(str(spec.disk))}/>\n"
        f"      <target dev='vda' bus='virtio'/>\n"
        f"    </disk>\n"
        f"    <serial type='file'>\n"
        f"      <source path={quoteattr(str(spec.console))} append='on'/>\n"
        f"      <target port='0'/>\n"
        f"    </serial>\n"
        f"{nic}"
        f"    <channel type='unix'>\n"
        f"      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
        f"    </channel>\n"
        f"    <memballoon model='none'/>\n"
        f"  </devices>\n"
        f"</domain>\n")
