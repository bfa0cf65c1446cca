"""`ringfence demo --vms-kind qemu`: the demo with real QEMU guests under libvirt.

Each demo host is a `ringfence.guest.libvirtd.QemuLab` host: a network and mount namespace
with its own libvirtd and virtlockd. The host's agent runs inside that namespace (so a power
cut of the host takes the agent, libvirtd, virtlockd and the guests at once), drives its
libvirtd over TCP on the lab network (``qemu+tcp://10.79.0.N/system``, which is also where
another host's libvirtd sends a live migration), and sends its heartbeats on two subnets of
the lab's one virtual switch. The VMs are the tiny guests of `ringfence.guest.image`
(software emulation: no KVM needed), each with its heartbeat disk in the lab's shared
directory; the agents check the first VM through QEMU's guest agent in it (`verify:
{guest_agent: true}`: guest-ping) and the others over HTTP (`verify: {tcp: ADDRESS:80}`).

The ground truth is the guests' own disks: a watcher thread reads every guest's latest
heartbeat record (`ringfence.guest.heartbeat`) every 50 ms and, when it advanced, appends a
record to the demo's disk file in the process VMs' format: the time it saw it, the VM, the host
whose QEMU runs that VM (from libvirt's pid files), and the guest's boot as the "token". So the
demo's summary, split-brain check and report read QEMU guests exactly as process VMs.

Needs root, libvirt-python and what ``scripts/install-qemu`` installs (`check_ready` says
what is missing), and fencing: the process watchdog can not reset a namespace host, so a hung
agent must be fenced by the power agent (`ringfence.fence.demo_power` with ``netns=``).

Failure semantics: `ConfigError` before anything starts when the machine can not run it;
`LabError` from the lab when a host does not come up (everything started is torn down).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from ringfence.errors import ConfigError
from ringfence.guest.domain import GuestSpec, domain_xml
from ringfence.guest.heartbeat import read_head
from ringfence.guest.image import GuestImage, default_image_dir
from ringfence.guest.libvirtd import LabError, QemuLab

__all__ = ["QemuWorld", "check_ready"]

WATCH_EVERY = 0.05


def check_ready(fencing: bool) -> GuestImage:
    """The guest image, or `ConfigError` saying what this machine lacks for the QEMU demo."""
    if os.geteuid() != 0:
        raise ConfigError("--vms-kind qemu: needs root (each host is a network namespace with "
                          "its own libvirtd)")
    if not fencing:
        raise ConfigError("--vms-kind qemu: needs fencing (the process watchdog can not reset "
                          "a libvirt host): drop --no-fencing")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        raise ConfigError("--vms-kind qemu: libvirt-python is missing: "
                          "PYTHON=.venv/bin/python bash scripts/install-libvirt") from None
    image = GuestImage(default_image_dir())
    missing = [tool for tool in ("libvirtd", "virtlockd", "qemu-system-x86_64")
               if shutil.which(tool) is None]
    if missing or not image.ready():
        what = ", ".join(missing) if missing else f"the guest image in {image.directory}"
        raise ConfigError(f"--vms-kind qemu: {what} missing: run scripts/install-qemu")
    return image


def boot_token(boot: str) -> int:
    """A guest boot's id as the integer "token" of the demo's records."""
    return int(hashlib.sha256(boot.encode()).hexdigest()[:8], 16)


class QemuWorld:
    """The QEMU side of one demo run: its lab, its guests, its ground-truth watcher."""

    def __init__(self, workdir: Path, hosts: list[str], vms: list[str], image: GuestImage,
                 disk_file: Path) -> None:
        self.workdir = workdir
        # The lab's own short directory in /tmp, not the work dir: a unix socket's path
        # (ROOT/hosts/hN/run/libvirt-sock) must stay under 108 bytes.
        self.lab = QemuLab(len(hosts), image=image)
        # demo host names (host1..) -> lab host names (h1..)
        self.names = {name: f"h{i + 1}" for i, name in enumerate(hosts)}
        self.vms = vms
        self.guests: dict[str, GuestSpec] = {}
        self.disk_file = disk_file
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        """Bring the hosts up and write the guests' domain XML; `ConfigError` (with the lab
        torn down) when a host does not come up."""
        try:
            self.lab.start()
        except LabError as exc:
            raise ConfigError(f"--vms-kind qemu: the hosts did not come up: {exc}") from None
        xml_dir = self.workdir / "domains"
        xml_dir.mkdir(exist_ok=True)
        for n, vm in enumerate(self.vms, start=1):
            self.guests[vm] = self.lab.guest(vm, n)
            (xml_dir / f"{vm}.xml").write_text(domain_xml(self.guests[vm]))
        self._watcher = threading.Thread(target=self._watch, name="qemu-ground-truth",
                                         daemon=True)
        self._watcher.start()

    def host_entry(self, host: str) -> dict[str, Any]:
        """The cluster file's entry fields for demo host `host`."""
        lab_host = self.lab.hosts[self.names[host]]
        return {"hypervisor": lab_host.tcp_uri,
                "interfaces": {"ring0": {"address": lab_host.address},
                               "ring1": {"address": self.lab.second_address(lab_host)}}}

    def vm_entry(self, vm: str) -> dict[str, Any]:
        guest = self.guests[vm]
        assert guest.address is not None
        # The first VM is checked through its guest agent (guest-ping), the others over HTTP:
        # the demo shows both kinds of verification.
        verify: dict[str, Any] = ({"guest_agent": True, "timeout": "3s"} if vm == self.vms[0]
                                  else {"tcp": f"{guest.address.split('/')[0]}:80",
                                        "timeout": "3s"})
        return {"domain_xml_file": str(self.workdir / "domains" / f"{vm}.xml"),
                "verify": verify}

    def fence_params(self, host: str) -> dict[str, str]:
        return {"netns": self.lab.hosts[self.names[host]].netns}

    def start_agent(self, host: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        return self.lab.run_in(self.names[host], argv, log)

    # ------------------------------------------------------------------ faults
    def power_off(self, host: str) -> None:
        self.lab.power_off(self.names[host])

    def power_on(self, host: str) -> None:
        self.lab.power_on(self.names[host])

    def freeze(self, host: str) -> None:
        self.lab.freeze(self.names[host])

    def fault(self, kind: str, host: str, agent_pid: int | None) -> None:
        """Host fault `kind` on demo host `host`: power_off (every process of its namespace
        killed), hang (all of them stopped), agent_hang (only its agent stopped: its guests
        and libvirtd run on)."""
        if kind == "power_off":
            self.power_off(host)
        elif kind == "hang":
            self.freeze(host)
        elif kind == "agent_hang" and agent_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent_pid, signal.SIGSTOP)

    def crash(self, vm: str) -> str | None:
        """Kill `vm`'s QEMU (SIGKILL); returns the host it ran on."""
        for host, lab_host in self.names.items():
            pid = self.lab.qemu_pid(lab_host, vm)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return host
        return None

    # ------------------------------------------------------------------ ground truth
    def where(self, vm: str) -> str | None:
        """The demo host whose QEMU runs `vm` now (None: none)."""
        for host, lab_host in self.names.items():
            if _alive(self.lab.qemu_pid(lab_host, vm)):
                return host
        return None

    def _watch(self) -> None:
        last: dict[str, tuple[str, int]] = {}
        with self.disk_file.open("a", encoding="utf-8") as out:
            while not self._stop.wait(WATCH_EVERY):
                for vm, guest in self.guests.items():
                    try:
                        beat = read_head(guest.disk)
                    except OSError:
                        continue
                    if beat is None or last.get(vm) == (beat.boot, beat.seq):
                        continue
                    last[vm] = (beat.boot, beat.seq)
                    host = self.where(vm)
                    if host is None:
                        continue  # its QEMU is gone: a record it wrote before it died
                    out.write(json.dumps({"t": time.time(), "vm": vm, "host": host,
                                          "token": boot_token(beat.boot),
                                          "seq": beat.seq}) + "\n")
                out.flush()

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        self.lab.close()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2:][:1] not in (b"Z", b"X")
