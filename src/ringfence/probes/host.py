"""`LinuxProbes`: what this host's NICs, datastores and memory controllers say, from Linux.

* **NICs** are found by MAC, not by name (names change across reboots): every entry of
  ``/sys/class/net`` whose ``address`` is a MAC the cluster file gives this host is reported
  under its current name, with ``carrier`` (reading it on an interface that is down fails
  with EINVAL: that is no carrier) and ``carrier_changes`` (0 where the kernel lacks it). When
  several interfaces show the same MAC (a bond's slaves, a bridge or VLAN on top of a port),
  the one the cluster file names wins, else a physical device (one with a ``device`` link),
  else the lowest ``ifindex``. Interfaces whose MAC is not found are left out of the reading:
  the health policy reports them missing.
* **Datastores** (those of this host that have a ``probe``): kind ``file`` writes a unique
  token to the path, fsyncs, reads it back and compares; kind ``command`` runs ``argv`` and
  counts exit status 0 as writable. A datastore without a probe is not in the reading.
* **Memory**: corrected errors are the sum of ``mc*/ce_count`` under the EDAC tree (0 without
  EDAC). The tree is ``/sys/devices/system/edac/mc``, or the directory that the environment
  variable ``RINGFENCE_EDAC_DIR`` names (the lab points each host's agent at its own counters).

Storage probes never hold up a cycle. Each datastore's probe runs in its own background
thread, started by `read` at most once every `interval` seconds (once every `retry_interval`
after a failed probe, so that a failure is confirmed, or cleared, within seconds) and never
while the previous one still runs; `read` reports the latest finished result. A probe that has
been running for longer than `timeout` is reported as an error ("has not finished after ...":
storage that hangs is unwritable storage) until it returns; a command probe is also killed at
`timeout`. Only the very first `read` waits, at most `first_wait` seconds, for the first
results, so that an agent does not start on "no result yet"; a datastore still without any
result then reads as the error "no result yet".

Failure semantics: `read` never raises. Whatever can not be read is reported as a reading: a
NIC without readable carrier has none, an unreadable EDAC counter counts 0, a probe that fails
carries its error text (``write failed: Permission denied (EACCES)``).
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ringfence.config import ClusterConfig, ProbeConfig
from ringfence.core.health import STORAGE_PROBE_EVERY
from ringfence.core.ports import HostReading, NicReading

__all__ = ["EDAC_DIR_ENV", "LinuxProbes", "command_probe", "file_probe"]

EDAC_DIR_ENV = "RINGFENCE_EDAC_DIR"
EDAC_DIR = Path("/sys/devices/system/edac/mc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _oserror_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def file_probe(path: Path, host: str) -> str | None:
    """Write a unique token to `path`, fsync, read it back. None if all went well, else
    what failed."""
    token = f"ringfence probe {host} {uuid.uuid4()}\n".encode()
    step = "open for writing"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            step = "write"
            written = os.write(fd, token)
            if written != len(token):
                return f"write failed: short write ({written} of {len(token)} bytes)"
            step = "fsync"
            os.fsync(fd)
        finally:
            os.close(fd)
        step = "read back"
        with open(path, "rb") as handle:
            back = handle.read(len(token) + 1)
    except OSError as exc:
        return f"{step} failed: {_oserror_text(exc)}"
    if back != token:
        return "read back failed: the data read is not the data written"
    return None


def command_probe(argv: list[str], timeout: float) -> str | None:
    """Run `argv`; None on exit status 0, else the status and the tail of its output."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return f"can not run {argv[0]}: {_oserror_text(exc)}"
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, 9)
        except OSError:
            process.kill()
        try:
            process.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return f"{argv[0]} timed out after {timeout:g}s"
    if process.returncode == 0:
        return None
    tail = out.decode(errors="replace").strip()[-300:]
    return f"{argv[0]} exited with status {process.returncode}" + (f": {tail}" if tail else "")


@dataclass
class _Probe:
    name: str
    run: Callable[[], str | None]
    result: str | None = None
    has_result: bool = False
    started: float | None = None  # monotonic start of the probe now running
    finished: float | None = None  # monotonic end of the latest probe
    reported: float | None = None  # `finished` of the result last handed out by `read`


class LinuxProbes:
    """`Probes` for host `host` of `config`; see the module docstring.

    `sysfs`/`edac`: the sysfs directories (tests point them at fake trees); `interval`:
    seconds between two probes of one datastore (`retry_interval` after a failed one);
    `timeout`: a probe running longer is an error
    (and a command probe is killed); `first_wait`: how long the first `read` waits for the
    first probe results.
    """

    def __init__(self, config: ClusterConfig, host: str, *,
                 sysfs: Path = Path("/sys/class/net"),
                 edac: Path | None = None,
                 interval: float = STORAGE_PROBE_EVERY, retry_interval: float = 1.0,
                 timeout: float = 10.0,
                 first_wait: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        spec = config.host(host)
        self.host = host
        self.sysfs = Path(sysfs)
        self.edac = Path(edac or os.environ.get(EDAC_DIR_ENV) or EDAC_DIR)
        self.interval = interval
        self.retry_interval = min(retry_interval, interval)
        self.timeout = timeout
        self.first_wait = first_wait
        self.clock = clock
        self.interfaces = [(iface.mac, iface.name) for iface in spec.interfaces.values()
                           if iface.mac]
        probes = {ds.name: ds.probe for ds in config.datastores}
        self.probes: list[_Probe] = []
        for name in spec.datastores:
            probe = probes.get(name)
            if probe is not None:
                self.probes.append(_Probe(name, self._runner(probe)))
        self._lock = threading.Lock()
        self._first = True

    def _runner(self, probe: ProbeConfig) -> Callable[[], str | None]:
        if probe.kind == "file":
            path = Path(probe.path or "")
            return lambda: file_probe(path, self.host)
        argv = list(probe.argv)
        return lambda: command_probe(argv, self.timeout)

    # ------------------------------------------------------------------ reading
    def read(self) -> HostReading:
        # read never raises: whatever goes wrong below shows as missing NICs, failing probes
        try:
            nics = self.read_nics()
        except Exception:
            nics = ()
        try:
            stores = self.read_datastores()
        except Exception as exc:
            stores = {probe.name: f"write probe failed: {exc!r}" for probe in self.probes}
        try:
            memory_errors = self.read_memory_errors()
        except Exception:
            memory_errors = 0
        return HostReading(nics, stores, memory_errors)

    def read_nics(self) -> tuple[NicReading, ...]:
        by_mac: dict[str, list[Path]] = {}
        try:
            entries = sorted(self.sysfs.iterdir())
        except OSError:
            return ()
        for entry in entries:
            mac = _read(entry / "address")
            if mac:
                by_mac.setdefault(mac.lower(), []).append(entry)
        readings = []
        for mac, hint in self.interfaces:
            candidates = by_mac.get(mac, [])
            if not candidates:
                continue
            nic = min(candidates, key=lambda path: (
                path.name != hint,
                not (path / "device").exists(),
                _int(path / "ifindex") or 1 << 30,
                path.name,
            ))
            readings.append(NicReading(mac, nic.name, self._carrier(nic),
                                       _int(nic / "carrier_changes") or 0))
        return tuple(readings)

    @staticmethod
    def _carrier(nic: Path) -> bool:
        # EINVAL on an interface that is down, ENOENT on a vanished one: no carrier either way
        return _read(nic / "carrier") == "1"

    def read_memory_errors(self) -> int:
        total = 0
        try:
            controllers = sorted(self.edac.glob("mc*"))
        except OSError:
            return 0
        for controller in controllers:
            total += _int(controller / "ce_count") or 0
        return total

    def read_datastores(self) -> dict[str, str | None]:
        now = self.clock()
        for probe in self.probes:
            self._maybe_start(probe, now)
        first = self._first
        if self._first:
            self._first = False
            deadline = time.monotonic() + self.first_wait
            while time.monotonic() < deadline:
                with self._lock:
                    if all(probe.has_result for probe in self.probes):
                        break
                time.sleep(0.01)
        now = self.clock()
        readings: dict[str, str | None] = {}
        with self._lock:
            for probe in self.probes:
                if probe.started is not None and now - probe.started > self.timeout:
                    readings[probe.name] = (f"write probe has not finished after "
                                            f"{now - probe.started:.0f}s (storage hangs?)")
                elif probe.has_result and probe.reported != probe.finished:
                    # Each probe's result is handed out once: the health policy counts
                    # consecutive failed *probes*, not readings of the same probe.
                    readings[probe.name] = probe.result
                    probe.reported = probe.finished
                elif not probe.has_result and first:
                    readings[probe.name] = "write probe: no result yet"
        return readings

    def _maybe_start(self, probe: _Probe, now: float) -> None:
        with self._lock:
            if probe.started is not None:
                return
            wait = self.interval if probe.result is None else self.retry_interval
            if probe.finished is not None and now - probe.finished < wait:
                return
            probe.started = now
        try:
            threading.Thread(target=self._probe, args=(probe,), name=f"probe-{probe.name}",
                             daemon=True).start()
        except RuntimeError as exc:  # no thread to be had: report it as the probe's result
            with self._lock:
                probe.started, probe.finished = None, now
                probe.result, probe.has_result = f"write probe could not start: {exc}", True

    def _probe(self, probe: _Probe) -> None:
        try:
            result = probe.run()
        except Exception as exc:  # a probe that crashes is a failing probe
            result = f"probe crashed: {exc!r}"
        with self._lock:
            probe.result = result
            probe.has_result = True
            probe.started = None
            probe.finished = self.clock()
