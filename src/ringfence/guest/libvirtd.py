"""Libvirt "hosts" on one machine: each runs its own libvirtd (and virtlockd) in a network
namespace and a mount namespace of its own, so that several hosts can start, stop and
live-migrate real QEMU guests between them without systemd and without a system libvirtd.

Per host ``hN`` (index N), everything private to it lives under ``ROOT/hosts/hN`` and is bind
mounted, inside its mount namespace only, over ``/etc/libvirt``, ``/run/libvirt``,
``/var/lib/libvirt``, ``/var/cache/libvirt`` and ``/var/log/libvirt``. Its libvirtd has its
own ``host_uuid`` (libvirt refuses a migration between hosts with the same UUID) and listens
on TCP, without TLS or authentication, only on the lab network address ``SUBNET.N`` inside
its namespace, which nothing outside the lab can reach. The root namespace reaches it through
its unix socket (``uri``), whose file is in ``ROOT/hosts/hN/run``.

The network: a switch namespace with a bridge (``SUBNET.254``), and per host a bridge
``rfqbr0`` (the host's address; guests attach to it) with a veth pair to the switch. Guests
use ``SUBNET.100`` and up. Namespaces are named ``PREFIX-TAG-sw`` and ``PREFIX-TAG-hN`` with a
random TAG, so labs that run at the same time never share a name.

Shared storage: ``ROOT/shared`` is seen at the same path by every host (a mount namespace
only hides the five libvirt directories), so a guest's disk there is on "shared storage" for
live migration. With `lock_disks`, every libvirtd uses the lockd lock manager with
``auto_disk_leases`` and ``require_lease_for_disks`` and its lock space in
``ROOT/shared/locks``: its virtlockd takes an fcntl lock there per disk, so a second host's
QEMU can not open a disk that a running guest holds (libvirt refuses the start).

The QEMU capabilities probe of a fresh libvirtd costs ~4 s; the first host that stops leaves
its cache in the guest image's directory and later hosts start from a copy.

Only what a `QemuLab` started is ever stopped: its own namespaces, and the processes in them
(the libvirtds, virtlockds and QEMUs it started). `power_off` is a host's power cut: every
process of its namespace killed at once. `close` (also on errors during `start`, and from
``with``) powers off every host, deletes the namespaces and the directory; it never raises.

Failure semantics: `LabError` (from `ringfence.lab.netns`) naming the command or the host when
the lab can not be built (not root, a tool missing, a libvirtd that does not answer within
`ready_timeout`); everything built so far is torn down first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ringfence.guest.domain import GuestSpec, domain_xml
from ringfence.guest.heartbeat import create_disk
from ringfence.guest.image import GuestImage, default_image_dir
from ringfence.lab import netns
from ringfence.lab.netns import LabError

__all__ = ["BRIDGE", "LabError", "QemuHost", "QemuLab"]

BRIDGE = "rfqbr0"
LIBVIRT_DIRS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
                "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}


@dataclass
class QemuHost:
    name: str
    index: int
    netns: str
    directory: Path
    address: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        """This host's libvirtd, from the root namespace (its unix socket)."""
        return f"qemu+unix:///system?socket={self.directory}/run/libvirt-sock"

    @property
    def tcp_uri(self) -> str:
        """This host's libvirtd, from another lab host (migration's destination URI)."""
        return f"qemu+tcp://{self.address}/system"

    @property
    def migrate_uri(self) -> str:
        """Where QEMU's migration stream goes (plain TCP on the lab network)."""
        return f"tcp://{self.address}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _libvirtd_conf(host: QemuHost) -> str:
    return (f'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "{host.address}"\n'
            f'auth_tcp = "none"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            f'unix_sock_group = "root"\nunix_sock_rw_perms = "0770"\n'
            f'host_uuid = "{uuid.uuid4()}"\n'
            f'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')


def _qemu_conf(host: QemuHost, lock_disks: bool) -> str:
    # QEMU as root without a security driver: the lab's guests are ours and tiny, and the
    # shared directory belongs to root. stdio_handler=file: no virtlogd needed.
    conf = ('user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
            'security_driver = "none"\nstdio_handler = "file"\n'
            f'migration_address = "{host.address}"\nmigration_host = "{host.address}"\n')
    if lock_disks:
        conf += 'lock_manager = "lockd"\n'
    return conf


class QemuLab:
    """`hosts` libvirt hosts h1..hN on one machine; see the module docstring."""

    def __init__(self, hosts: int, *, root: Path | None = None, prefix: str = "rfq",
                 subnet: str = "10.79.0", lock_disks: bool = True,
                 image: GuestImage | None = None, ready_timeout: float = 60.0) -> None:
        if not 1 <= hosts <= 9:
            raise ValueError(f"hosts must be 1..9, not {hosts}")
        self.tag = f"{prefix}-{secrets.token_hex(2)}"
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.shared = self.root / "shared"
        self.subnet = subnet
        prefix_octets, last = subnet.rsplit(".", 1)
        self.second_subnet = f"{prefix_octets}.{int(last) + 1}"
        self.lock_disks = lock_disks
        self.image = image or GuestImage(default_image_dir())
        self.ready_timeout = ready_timeout
        self.switch = f"{self.tag}-sw"
        self.hosts = {f"h{i}": QemuHost(f"h{i}", i, f"{self.tag}-h{i}",
                                        self.root / "hosts" / f"h{i}", f"{subnet}.{i}")
                      for i in range(1, hosts + 1)}
        self._namespaces: list[str] = []
        self._inodes: dict[str, int] = {}
        self._owns_root = root is None
        self.guests: dict[str, GuestSpec] = {}
        self._drivers: list[Any] = []
        self._cached: dict[str, Any] = {}

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> QemuLab:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise LabError("a QEMU lab needs root (network and mount namespaces)")
        for tool in ("libvirtd", "virsh", "qemu-system-x86_64", "unshare", "ip"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} is not installed (scripts/install-qemu)")
        if self.lock_disks and shutil.which("virtlockd") is None:
            raise LabError("virtlockd is not installed (scripts/install-qemu)")
        longest = max(len(str(h.directory / "run" / "libvirt-sock")) for h in
                      self.hosts.values())
        if longest > 107:
            raise LabError(f"the lab's directory {self.root} is too deep: its libvirtd socket "
                           f"paths would be {longest} bytes, over the 107 a unix socket allows")
        try:
            self._network()
            (self.shared / "locks").mkdir(parents=True, exist_ok=True)
            for mount_point in LIBVIRT_DIRS.values():
                Path(mount_point).mkdir(parents=True, exist_ok=True)
            for host in self.hosts.values():
                self._launch(host)
            for host in self.hosts.values():
                self._wait_ready(host)
        except BaseException:
            self.close()
            raise

    def _add_ns(self, name: str) -> None:
        netns.add(name)
        self._namespaces.append(name)
        self._inodes[name] = netns.inode(name)
        netns.ip("link", "set", "lo", "up", ns=name)

    def _network(self) -> None:
        self._add_ns(self.switch)
        netns.ip("link", "add", "sw", "type", "bridge", "stp_state", "0", "forward_delay", "0",
                 ns=self.switch)
        netns.ip("addr", "add", f"{self.subnet}.254/24", "dev", "sw", ns=self.switch)
        netns.ip("addr", "add", f"{self.second_subnet}.254/24", "dev", "sw", ns=self.switch)
        netns.ip("link", "set", "sw", "up", ns=self.switch)
        for host in self.hosts.values():
            ns = host.netns
            self._add_ns(ns)
            netns.ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
                     "forward_delay", "0", ns=ns)
            netns.ip("link", "add", "up0", "type", "veth", "peer", "name", host.name, "netns",
                     self.switch, ns=ns)
            netns.ip("link", "set", "up0", "master", BRIDGE, "up", ns=ns)
            netns.ip("addr", "add", f"{host.address}/24", "dev", BRIDGE, ns=ns)
            netns.ip("addr", "add", f"{self.second_address(host)}/24", "dev", BRIDGE, ns=ns)
            netns.ip("link", "set", BRIDGE, "up", ns=ns)
            netns.ip("link", "set", host.name, "master", "sw", "up", ns=self.switch)

    def _warm_cache(self) -> Path:
        return self.image.directory / "libvirt-qemu-cache"

    def _launch(self, host: QemuHost) -> None:
        for sub in LIBVIRT_DIRS:
            (host.directory / sub).mkdir(parents=True, exist_ok=True)
        etc = host.directory / "etc"
        (etc / "libvirtd.conf").write_text(_libvirtd_conf(host))
        (etc / "qemu.conf").write_text(_qemu_conf(host, self.lock_disks))
        (etc / "qemu-lockd.conf").write_text(
            f'auto_disk_leases = 1\nrequire_lease_for_disks = 1\n'
            f'file_lockspace_dir = "{self.shared / "locks"}"\n')
        (etc / "virtlockd.conf").write_text(
            'log_outputs = "3:file:/var/log/libvirt/virtlockd.log"\n')
        (etc / "libvirt.conf").write_text("")
        warm = self._warm_cache()
        if warm.is_dir():
            shutil.copytree(warm, host.directory / "cache" / "qemu", dirs_exist_ok=True)
        mounts = "".join(f"mount --bind {host.directory / sub} {point} && "
                         for sub, point in LIBVIRT_DIRS.items())
        lockd = ("virtlockd -d -p /run/libvirt/virtlockd.pid && " if self.lock_disks else "")
        script = (f"hostname {self.tag}-{host.name} && {mounts}{lockd}"
                  f"exec libvirtd -l -p /run/libvirt/libvirtd.pid")
        log = open(host.directory / "daemon.out", "ab")  # noqa: SIM115 (the child keeps it)
        with log:
            # ip netns exec, unshare and sh all exec: the Popen's pid is libvirtd's.
            host.process = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
                 "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def _wait_ready(self, host: QemuHost) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if host.process is not None and host.process.poll() is not None:
                raise LabError(f"libvirtd of {host.name} exited ({host.process.returncode}): "
                               f"{self._tail(host)}")
            if (host.directory / "run" / "libvirt-sock").exists():
                done = netns.run(["virsh", "-q", "-c", host.uri, "list"], check=False,
                                 timeout=30)
                if done.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise LabError(f"libvirtd of {host.name} did not answer within "
                               f"{self.ready_timeout:g}s: {self._tail(host)}")
            time.sleep(0.1)

    @staticmethod
    def _tail(host: QemuHost) -> str:
        text = ""
        for name in ("daemon.out", "log/libvirtd.log"):
            with contextlib.suppress(OSError):
                text += (host.directory / name).read_text(errors="replace")[-600:]
        return text.strip() or "(no output)"

    def second_address(self, host: QemuHost) -> str:
        """The host's address on the lab's second subnet (a second heartbeat network: the
        same virtual switch, another subnet)."""
        return f"{self.second_subnet}.{host.index}"

    def power_on(self, name: str) -> None:
        """Boot host `name` again after `power_off`: its /run/libvirt is emptied (a reboot
        clears /run), then its libvirtd and virtlockd start; its guests' definitions stay
        (they were in /etc/libvirt) and none of them runs. `LabError` if it does not come up."""
        host = self.hosts[name]
        if host.running():
            raise LabError(f"{name} is powered on already")
        shutil.rmtree(host.directory / "run", ignore_errors=True)
        self._launch(host)
        self._wait_ready(host)

    def run_in(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start `argv` in host `name`'s network namespace (a process of that host: its
        power cut kills it). ``ip netns exec`` execs, so the Popen's pid is the command's."""
        with open(log, "ab") as out:
            return subprocess.Popen(["ip", "netns", "exec", self.hosts[name].netns, *argv],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)

    def freeze(self, name: str) -> list[int]:
        """SIGSTOP every process of host `name` (a hung host); returns their pids."""
        pids = netns.alive_in(self._inodes[self.hosts[name].netns])
        netns.signal_pids(pids, signal.SIGSTOP)
        return pids

    def power_off(self, name: str) -> int:
        """Cut host `name`'s power: kill its libvirtd, virtlockd and QEMUs at once. Returns
        how many processes died. Its namespace stays (the host can not be started again)."""
        host = self.hosts[name]
        inode = self._inodes[host.netns]
        before = netns.alive_in(inode)
        killed = netns.kill_all(inode)
        if host.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.process.wait(5)
        netns.wait_exited(before, 10.0)
        return killed

    def close(self) -> None:
        """Power off every host, delete the namespaces and the lab's directory; never raises
        (what can not be removed is left and named in `leftovers`)."""
        self.leftovers: list[str] = []
        for driver in self._drivers:
            driver.close()
        self._drivers.clear()
        self._cached.clear()
        for host in self.hosts.values():
            if host.netns not in self._inodes:
                continue
            with contextlib.suppress(OSError):
                self._save_warm_cache(host)
            try:
                self.power_off(host.name)
            except LabError as exc:
                self.leftovers.append(f"{host.name}: {exc}")
        for name in reversed(self._namespaces):
            with contextlib.suppress(LabError):
                netns.kill_all(self._inodes[name])
            netns.delete_quiet(name)
            if netns.exists(name):
                self.leftovers.append(f"namespace {name}")
        self._namespaces.clear()
        self._inodes.clear()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _save_warm_cache(self, host: QemuHost) -> None:
        warm = self._warm_cache()
        caps = host.directory / "cache" / "qemu" / "capabilities"
        if warm.exists() or not caps.is_dir() or not any(caps.iterdir()):
            return
        tmp = warm.with_name(f".{warm.name}.{os.getpid()}")
        shutil.copytree(host.directory / "cache" / "qemu", tmp)
        with contextlib.suppress(OSError):
            os.rename(tmp, warm)
        shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def guest_address(self, n: int) -> str:
        """The n-th guest address (with prefix) of the lab network."""
        return f"{self.subnet}.{100 + n}/24"

    def http_get(self, address: str, path: str = "/", timeout: float = 3.0) -> str | None:
        """GET http://ADDRESS/PATH from the switch namespace; None if it does not answer."""
        url = f"http://{address.split('/')[0]}{path}"
        code = ("import sys, urllib.request\n"
                f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout={timeout!r})"
                ".read().decode())")
        done = netns.run(["ip", "netns", "exec", self.switch, sys.executable, "-c", code],
                         check=False, timeout=timeout + 10)
        return done.stdout if done.returncode == 0 else None

    def guest(self, name: str, n: int) -> GuestSpec:
        """Guest `name` with the n-th lab address, its heartbeat disk and console in the
        shared directory (the disk is created if missing)."""
        disk = self.shared / f"{name}.hb"
        create_disk(disk)
        spec = GuestSpec(name, self.image, disk, self.shared / f"{name}.console",
                         address=self.guest_address(n), bridge=BRIDGE)
        self.guests[name] = spec
        return spec

    def hypervisor(self, host: str, **options: Any) -> Any:
        """A new ringfence libvirt driver (`LibvirtHypervisor`) for `host`, defining the
        lab's guests (`guest`) by name, migrating over the lab network
        (``VIR_MIGRATE_UNSAFE``: the hosts share a local file system, which libvirt can not
        know is shared). `close` closes it."""
        from ringfence.hypervisor.libvirt import LibvirtHypervisor

        def xml(vm: str) -> str:
            if vm not in self.guests:
                raise KeyError(f"no guest {vm!r} in this lab")
            return domain_xml(self.guests[vm])

        options.setdefault("stop_grace", 3.0)  # the tiny guest ignores ACPI shutdown
        driver = LibvirtHypervisor(self.hosts[host].uri, xml,
                                   target_uri=lambda target: self.hosts[target].tcp_uri,
                                   stream_uri=lambda target: self.hosts[target].migrate_uri,
                                   unsafe_migration=True, **options)
        self._drivers.append(driver)
        return driver

    def driver(self, host: str) -> Any:
        """The lab's one driver for `host` (made on first use; one connection per host for
        the lab's life, so that nothing closes connections while others work)."""
        if host not in self._cached:
            self._cached[host] = self.hypervisor(host)
        return self._cached[host]

    def shadow(self, host: str, path: Path) -> Path:
        """Give host `host` a file of its own at `path` of the shared directory: an empty
        copy bind-mounted over it in that host's mount namespace only, so that its QEMUs open
        another file under the same name. This is how a disk on shared block storage looks
        (each host its own device node for one LUN, where QEMU's own image locks, which are
        local to one kernel, can not see the other host's): only the lock manager's lease,
        named by the path, is shared. Returns the host's own file."""
        lab_host = self.hosts[host]
        if lab_host.process is None or not lab_host.running():
            raise LabError(f"{host} is not running")
        own = lab_host.directory / f"shadow-{path.name}"
        with open(own, "wb") as out:
            out.truncate(path.stat().st_size)
        netns.run(["nsenter", "-t", str(lab_host.process.pid), "-m", "--", "mount", "--bind",
                   str(own), str(path)])
        return own

    def qemu_pid(self, host: str, vm: str) -> int | None:
        """The pid of `vm`'s QEMU on `host` (libvirt's pid file), if it runs there."""
        try:
            pid = int((self.hosts[host].directory / "run" / "qemu" / f"{vm}.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def namespaces(self) -> list[str]:
        """This lab's namespaces that exist now (none once it is closed)."""
        return [name for name in netns.names() if name.startswith(f"{self.tag}-")]

    def virsh(self, host: str, *args: str, check: bool = True) -> str:
        return netns.run(["virsh", "-q", "-c", self.hosts[host].uri, *args], check=check,
                         timeout=60).stdout

