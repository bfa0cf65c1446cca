"""Watchdogs: the timers that reset this host unless the agent pets them in time.

Three implementations of the `Watchdog` protocol:

* `LinuxWatchdog`: the kernel's watchdog device (``/dev/watchdog``: a hardware timer, or
  ``softdog``). `arm` opens it and sets the timeout with the ``WDIOC_SETTIMEOUT`` ioctl, `pet`
  writes a byte, `disarm` writes the magic ``V`` and closes (a close without ``V`` leaves the
  timer running: an agent that dies resets the host).
* `SystemdWatchdog`: systemd's service watchdog, petted with ``sd_notify("WATCHDOG=1")``. Hand-
  written: sd_notify is one datagram to the ``$NOTIFY_SOCKET`` unix socket, a dozen lines, and
  doing it here avoids a C library binding (libsystemd) for that. It is only as strong as the
  unit makes it; see the class.
* `ProcessWatchdog`: for the demo and the tests. A supervisor process
  (`ringfence.fence.process_watchdog`) SIGKILLs the agent and every process VM of the host when
  the agent stops petting: the same outcome as a reset of a host, without root and without
  resetting the machine the tests run on.

Failure semantics: `arm` raises `OSError` when the watchdog can not be armed as asked (no
device, no notify socket, a timer longer than requested: a longer timer would break the rule
``watchdog_timeout < host_lease_ttl``, so it is refused, never silently accepted). `pet` and
`disarm` never raise: a pet that does not arrive lets the timer run out, which is the safe
outcome (the host resets); the last error is kept in ``last_error`` for the agent's status.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import ringfence

__all__ = ["LinuxWatchdog", "ProcessWatchdog", "SystemdWatchdog"]

WDIOC_SETTIMEOUT = 0xC0045706  # <linux/watchdog.h>: _IOWR('W', 6, int)
# `ProcessWatchdog`: pets closer together than this are one pet; the beat file's mtime is
# moved at most this often.
PET_GAP = 0.1
BEAT_FILE_EVERY = 1.0


class LinuxWatchdog:
    """The kernel watchdog device at `path`. The timeout is set in whole seconds, rounded
    down (a timer that fires early is safe; one that fires late is not); the driver's answer
    is checked, and a device that insists on a longer timeout is closed (magic close) and
    refused with OSError(EINVAL)."""

    def __init__(self, path: str | Path = "/dev/watchdog") -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.timeout: int | None = None
        self.last_error: OSError | None = None

    def arm(self, timeout: float) -> None:
        if self.fd is not None:
            raise OSError(errno.EBUSY, f"{self.path} is already armed")
        seconds = math.floor(timeout)
        if seconds < 1:
            raise OSError(errno.EINVAL, f"{self.path} counts whole seconds; "
                                        f"a timeout of {timeout:g}s can not be set")
        fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            buffer = bytearray(struct.pack("i", seconds))
            fcntl.ioctl(fd, WDIOC_SETTIMEOUT, buffer, True)
            granted = struct.unpack("i", buffer)[0]
            if granted > timeout:
                raise OSError(errno.EINVAL, f"{self.path} set a timeout of {granted}s, "
                                            f"longer than the {timeout:g}s asked for")
        except OSError:
            with contextlib.suppress(OSError):
                os.write(fd, b"V")
            os.close(fd)
            raise
        self.fd = fd
        self.timeout = granted

    def pet(self) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, b"\0")
        except OSError as exc:
            self.last_error = exc

    def disarm(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, b"V")
        except OSError as exc:
            self.last_error = exc
        with contextlib.suppress(OSError):
            os.close(fd)


class SystemdWatchdog:
    """systemd's per-service watchdog, petted with ``WATCHDOG=1`` on ``$NOTIFY_SOCKET``.

    systemd's timer is set by the unit, not by us: `arm` checks that ``$WATCHDOG_USEC`` (the
    unit's ``WatchdogSec=``) exists and is no longer than `timeout`, and that ``$WATCHDOG_PID``
    (if set) is this process; otherwise OSError. On its own, systemd's watchdog only kills the
    service. To make it a self-fence the unit needs ``WatchdogSec=`` (at most
    ``watchdog_timeout``), ``NotifyAccess=main``, ``Restart=no`` and
    ``FailureAction=reboot-force``, and systemd's ``RuntimeWatchdogSec=`` should drive a hardware
    watchdog so that a hung kernel resets too. `disarm` sends ``STOPPING=1``: systemd's service
    watchdog can not be switched off from inside, it ends when the service exits.
    `environ` is for tests (default: the process environment).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ if environ is not None else os.environ
        self.address: str | None = None
        self.last_error: OSError | None = None

    def arm(self, timeout: float) -> None:
        address = self.environ.get("NOTIFY_SOCKET", "")
        if not address or address[0] not in "/@":
            raise OSError(errno.ENOENT, "no $NOTIFY_SOCKET: not started by systemd with "
                                        "Type=notify or NotifyAccess=")
        usec = self.environ.get("WATCHDOG_USEC", "")
        if not usec.isdigit() or int(usec) == 0:
            raise OSError(errno.ENOENT, "no $WATCHDOG_USEC: the unit sets no WatchdogSec=")
        if int(usec) > timeout * 1_000_000:
            raise OSError(errno.EINVAL, f"the unit's WatchdogSec= ({int(usec) / 1e6:g}s) is "
                                        f"longer than watchdog_timeout ({timeout:g}s)")
        pid = self.environ.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            raise OSError(errno.EPERM, f"systemd's watchdog is for pid {pid}, not this one")
        self._send(address, b"WATCHDOG=1")
        self.address = address

    def pet(self) -> None:
        if self.address is None:
            return
        try:
            self._send(self.address, b"WATCHDOG=1")
        except OSError as exc:
            self.last_error = exc

    def disarm(self) -> None:
        if self.address is None:
            return
        address, self.address = self.address, None
        try:
            self._send(address, b"STOPPING=1")
        except OSError as exc:
            self.last_error = exc

    @staticmethod
    def _send(address: str, message: bytes) -> None:
        target = "\0" + address[1:] if address.startswith("@") else address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)
            sock.sendto(message, target)


class ProcessWatchdog:
    """A supervisor process that kills the agent (`agent_pid`, default this process) and every
    VM recorded in `vm_dir` (the `ProcessHypervisor`'s state directory) when not petted within
    the armed timeout. See `ringfence.fence.process_watchdog` for how it decides and why.

    The countdown runs on a pipe to the supervisor, not on a file's mtime (see there why).
    `beat_file`, if given, is touched by a `pet` as well, at most once a second
    (`BEAT_FILE_EVERY`): its mtime shows an operator when the agent last petted; the
    supervisor does not read it.

    `arm` returns once the supervisor watches (OSError if it does not within
    `start_timeout`); `pet` writes a byte to its input without ever blocking; `disarm` writes
    the magic ``V`` and waits (bounded) for the supervisor to exit. The supervisor runs in its
    own session so that a signal to the agent's process group does not reach it.
    """

    def __init__(self, vm_dir: Path, *, agent_pid: int | None = None,
                 beat_file: Path | None = None, python: str = sys.executable,
                 start_timeout: float = 10.0) -> None:
        self.vm_dir = Path(vm_dir)
        self.pid = agent_pid if agent_pid is not None else os.getpid()
        self.beat_file = Path(beat_file) if beat_file is not None else None
        self.python = python
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.last_error: OSError | None = None
        self.last_pet = self.last_touch = -math.inf

    def arm(self, timeout: float) -> None:
        if self.process is not None and self.process.poll() is None:
            raise OSError(errno.EBUSY, "the process watchdog is already armed")
        if timeout <= 0:
            raise OSError(errno.EINVAL, f"invalid watchdog timeout {timeout:g}s")
        env = dict(os.environ)
        package_root = str(Path(ringfence.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [env.get("PYTHONPATH")])])
        argv = [self.python, "-m", "ringfence.fence.process_watchdog", "--pid", str(self.pid),
                "--vm-dir", str(self.vm_dir), "--timeout", repr(float(timeout))]
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=env, start_new_session=True)
        assert process.stdin is not None and process.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready = select.select([process.stdout], [], [], max(0.0, left))[0] if left > 0 else []
            chunk = os.read(process.stdout.fileno(), 64) if ready else b""
            if not chunk:
                process.kill()
                process.wait()
                process.stdin.close()
                process.stdout.close()
                raise OSError(errno.EIO, f"the watchdog supervisor did not start "
                                         f"(exit status {process.returncode})")
            line += chunk
        process.stdout.close()
        os.set_blocking(process.stdin.fileno(), False)
        self.process = process
        self.last_pet = self.last_touch = -math.inf

    def pet(self) -> None:
        """A pet within `PET_GAP` of the previous one is dropped: the agent pets from its
        heartbeat cycle, its decision cycle and after each renewal, up to ten times a second,
        and every pet wakes the supervisor. A dropped pet leaves the deadline where the
        previous pet put it, at most `PET_GAP` earlier than this one would have: a reset
        only ever comes sooner, never later, than the lease rule allows."""
        if self.process is None or self.process.stdin is None:
            return
        now = time.monotonic()
        if now - self.last_pet < PET_GAP:
            return
        self.last_pet = now
        try:
            os.write(self.process.stdin.fileno(), b".")
        except BlockingIOError:
            pass  # the supervisor is not reading: a lost pet only brings the reset closer
        except OSError as exc:
            self.last_error = exc
        if self.beat_file is not None and now - self.last_touch >= BEAT_FILE_EVERY:
            self.last_touch = now
            try:
                self.beat_file.touch()
            except OSError as exc:
                self.last_error = exc

    def disarm(self) -> None:
        process, self.process = self.process, None
        if process is None or process.stdin is None:
            return
        try:
            os.write(process.stdin.fileno(), b"V")
        except OSError as exc:
            self.last_error = exc
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def armed(self) -> bool:
        """The supervisor runs (it has neither fired nor been disarmed)."""
        return self.process is not None and self.process.poll() is None
