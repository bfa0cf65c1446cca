"""The process hypervisor: every VM is a local process (`ringfence.hypervisor.process_vm`).

This is the driver of `ringfence demo` and of the integration tests: real processes, real
signals, a real shared "disk", so that the agent's code paths (start, stop, destroy, crash
detection, re-listing after a restart, self-fence by the watchdog) run against something that
can actually fail. It is not a VM monitor.

Layout: one *state directory* per host, ``PARENT/HOST``; the hosts of one demo cluster share
``PARENT`` (the agent's ``--vm-dir``). Each holds ``.host``, the name of the host whose
hypervisor keeps its VMs there, and for every VM that runs there

* ``VM.json``: the VM's identity (``vm``, ``host``, ``pid``, ``starttime``, ``token``,
  ``port_file``), written by the VM process itself before it reports ready, rewritten (atomically)
  by the hypervisor when the agent re-tokens the VM;
* ``VM.port``: the TCP port of its HTTP answer (read by `ProcessGuestChecks`);
* ``VM.log``: its stderr.

VM processes are started detached (own session, re-parented to init): they survive an agent
crash, exactly like real VMs survive a crash of the HA agent. A restarted agent finds them again
by their state files. A process counts as one of ours only if it is alive (not a zombie), its
``/proc/PID/stat`` start time equals the recorded one (pid reuse) and its command line is the
process VM's with the same ``--vm`` and ``--host``.

Failure semantics (the `Hypervisor` protocol): `start`, `stop` and `migrate` are jobs
(`hypervisor.jobs.ThreadJob`) that report a failure with the VM's log tail where that helps;
`list_running` and `destroy` raise `HypervisorError`. Nothing blocks the agent's cycle: a
start's job waits at most `start_timeout` for the VM to serve, a stop's at most `stop_grace`
(then SIGKILL); `destroy` waits at most `kill_wait` for the process to vanish.

`migrate` is a stand-in for libvirt's live migration, not a live migration. Like QEMU's, it
starts the target first and switches over last: a new VM process is started for the target
(``--incoming``: ready, but writing nothing to the disk and answering no guest check; its state
file is marked incoming, so the target lists it as libvirt lists a migration's paused copy, and
the target's self-fence destroys it) while the source keeps running (and, with
`migration_delay`, "copies" for that long, watching the copy: a copy that ends fails the
migration at once, as does the source's end for the copy); then the source is paused
(SIGSTOP, the final stop-and-copy phase), the target is told to take over (SIGUSR1: it writes its
state file under ``PARENT/TARGET`` with the new token and its first disk line), and the paused
source is killed. The guest restarts (no memory is copied; its ``seq`` starts again at 0), but
the switch-over costs one signal and one disk tick, and it never runs on two hosts at once: the
paused source writes nothing, so the disk shows the source's last line before the target's
first. If the target can not be started or does not take over, it is killed, the source is
resumed and `HypervisorError` says that the VM still runs here. A target whose
``PARENT/TARGET`` does not say ``TARGET`` in ``.host`` keeps its VMs somewhere else (its own
``--vm-dir``): its agent would never see a copy started there and would start its own, so the
migration is refused.

Where the target's copy runs: on one machine the hosts' VMs are processes of one kernel, so a
copy started by the source's hypervisor runs wherever the source runs. When the hosts are
separate machines in all but file system (the lab: one network namespace per host), that is the
wrong place: the source's power cut would kill the migrated copy with it, and the target's guest
check could not reach it. `launcher` names the target's place: a command prefix (``ip netns exec
NS``) that the copy is started under, for every host but this one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ringfence
from ringfence.hypervisor.base import HypervisorError
from ringfence.hypervisor.jobs import ThreadJob
from ringfence.hypervisor.process_state import (
    VM_MODULE,
    VMRecord,
    claim,
    claimant,
    is_alive,
    is_ours,
    parse_record,
    read_records,
    write_json_atomically,
)
from ringfence.hypervisor.process_vm import proc_stat, runs, starttime_in
from ringfence.listing import Stamp

# How long the paused source waits for the target to take over (it needs one signal and two
# small files); past it, the source runs on.
SWITCHOVER_TIMEOUT = 2.0
# An incoming VM gives up this long after its copy and switch-over should have ended (its
# source died mid-migration, and nobody is left to tell it).
INCOMING_SLACK = 5.0
# How often the source looks at its copy during the "memory copy" (a copy destroyed on the
# target fails the migration within this).
COPY_POLL = 0.05
# At most this many VM processes are remembered as checked (`ProcessHypervisor._is_ours`).
VERIFIED_LIMIT = 4096

__all__ = [
    "ProcessGuestChecks",
    "ProcessHypervisor",
    "VMRecord",
    "is_ours",
    "read_records",
]


def launcher_from_template(template: str) -> Callable[[str], list[str]]:
    """The `ProcessHypervisor` launcher of a command template such as ``ip netns exec
    lab-{host}``: split like a shell would, ``{host}`` replaced by the target host's name.
    Raises ValueError saying what is expected."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ValueError(f"not a command prefix ({exc}): {template!r}") from None
    if not words or not any("{host}" in word for word in words):
        raise ValueError(f"a command prefix naming the target host as {{host}} is expected, "
                         f"e.g. 'ip netns exec lab-{{host}}'; got {template!r}")

    def launcher(host: str) -> list[str]:
        return [word.replace("{host}", host) for word in words]

    return launcher


def _tail(path: Path, limit: int = 400) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _state_record(path: Path) -> VMRecord | None:
    """The record in one state file; None if it is gone or not one."""
    try:
        return parse_record(path, json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


class ProcessHypervisor:
    """VMs as local processes; see the module docstring.

    `host`: this host's name (the VMs' ``--host``); `state_dir`: ``PARENT/HOST``, created if
    missing; `disk_file`: the shared disk every VM appends to; `python`: the interpreter that
    runs the VMs; `migration_delay` and `copy_time(vm)`: how long a migration "copies" while
    the source runs (fixed, and per VM); `launcher`: the command prefix that starts a process
    on another host (see the module docstring; None: every host is this machine).
    """

    def __init__(self, host: str, state_dir: Path, disk_file: Path, *,
                 python: str = sys.executable, start_timeout: float = 10.0,
                 stop_grace: float = 2.0, kill_wait: float = 2.0,
                 migration_delay: float = 0.0,
                 copy_time: Callable[[str], float] | None = None,
                 launcher: Callable[[str], list[str]] | None = None,
                 on_job_done: Callable[[], None] | None = None) -> None:
        self.host = host
        self.launcher = launcher
        self.on_job_done = on_job_done  # called when a job ends (`ThreadJob(on_done=...)`)
        self.state_dir = Path(state_dir)
        self.disk_file = Path(disk_file)
        self.python = python
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.kill_wait = kill_wait
        self.migration_delay = migration_delay  # how long a migration's "copy" takes
        self.copy_time = copy_time  # and, per VM, how long copying its memory takes on top
        self.state_dir.mkdir(parents=True, exist_ok=True)
        claim(self.state_dir, host)
        # The agent lists its VMs at every cycle: a state directory is read again only when
        # it may have changed (`listing.Stamp`: state files are only ever replaced whole), and
        # a VM process's command line is read once per process (pid and start time). What
        # is left per listing is one stat and one /proc/PID/stat per VM (issue 17).
        self._listings: dict[Path, tuple[Stamp, list[VMRecord]]] = {}
        self._verified: set[tuple[int, int, str, str]] = set()

    # ------------------------------------------------------------------ protocol
    def list_running(self) -> dict[str, int]:
        """VMs whose state file names a live process VM of this host (paused ones and
        migrations' incoming copies included, as libvirt lists them). State files of dead VMs
        are removed."""
        return {record.vm: record.token for record in self._running(self.state_dir, self.host)}

    def start(self, vm: str, token: int) -> ThreadJob:
        """Start `vm` under `token` (a job: waiting for it to serve takes up to
        `start_timeout`); if it runs already, only record the new token (the VM reads it on its
        next tick). Idempotent for the same token. Cancelled, a start that completed is undone."""
        return ThreadJob(f"start {vm}", lambda: self._start_now(vm, token),
                         undo=lambda: self.destroy(vm), on_done=self.on_job_done)

    def _start_now(self, vm: str, token: int) -> str:
        record = self._record(vm)
        if record is not None and record.incoming:
            # libvirt refuses to start a domain that is active as a migration's target
            raise HypervisorError(f"{vm} is arriving on {self.host} by live migration (pid "
                                  f"{record.pid}); not starting it")
        if record is not None:
            if record.token != token:
                data = self._record_data(record, token=token)
                try:
                    write_json_atomically(record.path, data)
                except OSError as exc:
                    raise HypervisorError(f"{vm}: can not record token {token}: {exc}") from exc
            return f"{vm} runs on {self.host} with token {token}"
        self._launch(vm, self.host, self.state_dir, token)
        return f"{vm} started on {self.host}"

    def stop(self, vm: str, token: int) -> ThreadJob:
        """Clean shutdown (a job): SIGTERM (and SIGCONT, so a paused VM can obey), SIGKILL
        after `stop_grace` seconds."""
        return ThreadJob(f"stop {vm}", lambda: self._stop_now(vm), on_done=self.on_job_done)

    def _stop_now(self, vm: str) -> str:
        record = self._record(vm)
        if record is None:
            return f"{vm} does not run on {self.host}"
        _signal(record.pid, signal.SIGTERM)
        _signal(record.pid, signal.SIGCONT)
        if not _wait_gone(record.pid, self.stop_grace):
            _signal(record.pid, signal.SIGKILL)
            if not _wait_gone(record.pid, self.kill_wait):
                raise HypervisorError(f"{vm} (pid {record.pid}) did not stop")
        self._forget(record)
        return f"{vm} stopped on {self.host}"

    def destroy(self, vm: str) -> None:
        """SIGKILL at once; returns when the process is gone."""
        record = self._record(vm)
        if record is None:
            return
        _signal(record.pid, signal.SIGKILL)
        if not _wait_gone(record.pid, self.kill_wait):
            raise HypervisorError(f"{vm} (pid {record.pid}) survived SIGKILL for "
                                  f"{self.kill_wait:g}s")
        self._forget(record)

    def migrate(self, vm: str, target: str, token: int) -> ThreadJob:
        """Move `vm` to `target` (a job; a stand-in for live migration, see the module
        docstring). With `migration_delay`, the "memory copy" takes that long while the
        source keeps running; cancelled during it, the migration is aborted and the VM stays."""
        aborted = threading.Event()
        return ThreadJob(f"migrate {vm} to {target}",
                         lambda: self._migrate_now(vm, target, token, aborted),
                         abort=aborted.set, on_done=self.on_job_done)

    def _migrate_now(self, vm: str, target: str, token: int, aborted: threading.Event) -> str:
        record = self._record(vm)
        if record is None:
            raise HypervisorError(f"{vm} does not run on {self.host}")
        if target == self.host:
            raise HypervisorError(f"{vm}: can not migrate from {self.host} to itself")
        target_dir = self.state_dir.parent / target
        if claimant(target_dir) != target:
            raise HypervisorError(
                f"{vm}: {target}'s agent does not keep its VMs in {target_dir} (process VMs "
                f"move only between hosts that share one --vm-dir); not migrating, it still "
                f"runs on {self.host}")
        if any(r.vm == vm for r in self._running(target_dir, target)):
            raise HypervisorError(f"{vm} already runs on {target}; not migrating")
        copying = self.migration_delay + (self.copy_time(vm) if self.copy_time else 0.0)
        try:
            incoming = self._launch(vm, target, target_dir, token,
                                    incoming_for=copying + SWITCHOVER_TIMEOUT + INCOMING_SLACK,
                                    source=record)
        except HypervisorError as exc:
            raise HypervisorError(f"migration of {vm} to {target} failed, it still runs on "
                                  f"{self.host}: {exc}") from exc
        ended = self._copy(incoming, copying, aborted)
        if ended is not None:
            self._kill_incoming(incoming)
            raise HypervisorError(f"{ended}; {vm} still runs on {self.host}")
        if not is_ours(incoming) or (proc_stat(incoming.pid) or b"")[:1] == b"T":
            # The target stopped answering during the copy (it hangs, or died): a real
            # migration's stream stalls and fails there, before the source is paused.
            self._kill_incoming(incoming)
            raise HypervisorError(f"migration of {vm} to {target} failed, it still runs on "
                                  f"{self.host}: the copy on {target} does not answer")
        _signal(record.pid, signal.SIGSTOP)
        if not self._take_over(incoming, target_dir):
            self._kill_incoming(incoming)
            _signal(record.pid, signal.SIGCONT)
            raise HypervisorError(f"migration of {vm} to {target} failed, it still runs on "
                                  f"{self.host}: the copy did not take over within "
                                  f"{SWITCHOVER_TIMEOUT:g}s: {_tail(target_dir / f'{vm}.log')}")
        _signal(record.pid, signal.SIGKILL)
        if not _wait_gone(record.pid, self.kill_wait):
            raise HypervisorError(f"{vm} started on {target} but the paused source (pid "
                                  f"{record.pid}) survived SIGKILL: it may run in both places")
        self._forget(record)
        return f"{vm} moved from {self.host} to {target}"

    @staticmethod
    def _copy(incoming: VMRecord, copying: float, aborted: threading.Event) -> str | None:
        """The "memory copy": `copying` seconds while the source runs on. None when it is
        done; else why the migration ends here: aborted, or the copy is gone (the target
        destroyed it, fenced itself or lost power: libvirt's migration call fails at once)."""
        deadline = time.monotonic() + copying
        while True:
            left = deadline - time.monotonic()
            if aborted.wait(min(max(left, 0.0), COPY_POLL)):
                return f"the migration of {incoming.vm} to {incoming.host} was aborted"
            if not is_ours(incoming):
                return (f"the migration of {incoming.vm} to {incoming.host} failed: the copy "
                        f"on {incoming.host} ended during the copy")
            if left <= COPY_POLL:
                return None

    # ------------------------------------------------------------------ helpers
    def _record(self, vm: str) -> VMRecord | None:
        """The live record of `vm` on this host, or None."""
        for record in self._running(self.state_dir, self.host):
            if record.vm == vm:
                return record
        return None

    def _running(self, state_dir: Path, host: str) -> list[VMRecord]:
        alive = []
        for record in self._records(state_dir):
            if record.host != host or record.path.stem != record.vm:
                continue  # not a file this hypervisor wrote: leave it alone
            if self._is_ours(record):
                alive.append(record)
            else:  # the VM died (or its pid now belongs to another process): forget it
                with contextlib.suppress(OSError):
                    record.path.unlink()
        return alive

    def _records(self, state_dir: Path) -> list[VMRecord]:
        """`read_records(state_dir)`, read again only if the directory may have changed."""
        listing = self._listings.get(state_dir)
        if listing is not None and listing[0].unchanged():
            return listing[1]
        stamp = Stamp(state_dir)
        stamp.reading()
        try:
            records = read_records(state_dir)
        except (OSError, ValueError) as exc:
            self._listings.pop(state_dir, None)
            raise HypervisorError(f"can not read VM state in {state_dir}: {exc}") from exc
        self._listings[state_dir] = (stamp, records)
        return records

    def _is_ours(self, record: VMRecord) -> bool:
        """`is_ours(record)`, with the command line read once per process: a process found
        ours stays ours while it lives with the same start time (pid reuse changes it)."""
        if record.starttime is None:
            return is_ours(record)
        key = (record.pid, record.starttime, record.vm, record.host)
        if key in self._verified:
            if runs(record.pid, record.starttime):
                return True
            self._verified.discard(key)
            return False
        if not is_ours(record):
            return False
        if len(self._verified) >= VERIFIED_LIMIT:
            self._verified.clear()  # a bound, not a policy: they are checked once again
        self._verified.add(key)
        return True

    @staticmethod
    def _record_data(record: VMRecord, **changes: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"vm": record.vm, "host": record.host, "pid": record.pid,
                                "starttime": record.starttime, "token": record.token,
                                "port_file": record.port_file}
        if record.incoming:
            data["incoming"] = True
        data.update(changes)
        return data

    def _forget(self, record: VMRecord) -> None:
        for path in (record.path, Path(record.port_file)):
            with contextlib.suppress(OSError):
                path.unlink()

    def _launch(self, vm: str, host: str, state_dir: Path, token: int, *,
                incoming_for: float | None = None, source: VMRecord | None = None) -> VMRecord:
        """Start a VM process for `host` and wait until it serves (`incoming_for`: an
        incoming VM, until it waits, at most that long and while the `source` process runs,
        to take over; see `process_vm`). Returns what its state file will say."""
        incoming = incoming_for is not None
        state, port, log = (state_dir / f"{vm}.json", state_dir / f"{vm}.port",
                            state_dir / f"{vm}.log")
        if not incoming:
            with contextlib.suppress(OSError):
                port.unlink()
        prefix = self.launcher(host) if self.launcher is not None and host != self.host else []
        argv = [*prefix, self.python, "-m", VM_MODULE, "--vm", vm, "--host", host,
                "--token", str(token), "--disk", str(self.disk_file), "--port-file", str(port),
                "--state-file", str(state), "--log", str(log), "--detach",
                *(["--incoming", "--incoming-for", f"{incoming_for:.3f}"]
                  if incoming_for is not None else []),
                *(["--source-pid", str(source.pid)] if source is not None else []),
                *(["--source-starttime", str(source.starttime)]
                  if source is not None and source.starttime is not None else [])]
        env = dict(os.environ)
        package_root = str(Path(ringfence.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [env.get("PYTHONPATH")])])
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.start_timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            if not incoming:  # an incoming VM that never said so left no state file
                self._kill_half_started(state, vm, host)
            raise HypervisorError(f"{vm} did not come up on {host} within "
                                  f"{self.start_timeout:g}s: {_tail(log)}") from None
        except OSError as exc:
            raise HypervisorError(f"can not run {argv[0]}: {exc}") from exc
        out = done.stdout.decode(errors="replace").split()
        said = "incoming" if incoming else "ready"
        if done.returncode != 0 or len(out) != 2 or out[0] != said or not out[1].isdigit():
            why = _tail(log) or done.stderr.decode(errors="replace").strip()[-400:]
            raise HypervisorError(f"{vm} failed to start on {host}: {why or 'no output'}")
        pid = int(out[1])
        stat = proc_stat(pid)
        return VMRecord(vm, host, pid, starttime_in(stat) if stat is not None else None, token,
                        str(port), state, incoming)

    def _take_over(self, incoming: VMRecord, target_dir: Path) -> bool:
        """Tell an incoming VM to take over; True once its state file names it."""
        if not is_ours(incoming):
            return False
        _signal(incoming.pid, signal.SIGUSR1)
        deadline = time.monotonic() + SWITCHOVER_TIMEOUT
        while time.monotonic() < deadline:
            if any(r.pid == incoming.pid and not r.incoming
                   for r in self._running(target_dir, incoming.host)):
                return True
            if not is_alive(incoming.pid):
                return False
            time.sleep(0.005)
        return False

    def _kill_incoming(self, incoming: VMRecord) -> None:
        """Kill an incoming VM (if it is still that process) and remove its state file (if
        it still names that process: the target may have started a VM of its own since)."""
        if is_ours(incoming):
            _signal(incoming.pid, signal.SIGKILL)
            _wait_gone(incoming.pid, self.kill_wait)
        record = _state_record(incoming.path)
        if record is not None and record.pid == incoming.pid and not is_ours(record):
            with contextlib.suppress(OSError):
                incoming.path.unlink()

    def _kill_half_started(self, state: Path, vm: str, host: str) -> None:
        record = _state_record(state)
        if record is None:
            return
        if record.vm == vm and record.host == host and is_ours(record):
            _signal(record.pid, signal.SIGKILL)
            _wait_gone(record.pid, self.kill_wait)
        with contextlib.suppress(OSError):
            state.unlink()


class ProcessGuestChecks:
    """`GuestChecks` for process VMs: ``GET /`` on the port in ``STATE_DIR/VM.port`` must
    answer ``vm VM on HOST ...`` (HOST: `host`, by default the state directory's name).

    Never raises and never waits longer than `timeout` (default 0.5 s): a VM that is paused,
    gone, or answering for another name or host is False. The answer is always final (never
    None): the check is quick enough to run within the agent's cycle.
    """

    def __init__(self, state_dir: Path, *, host: str | None = None,
                 timeout: float = 0.5) -> None:
        self.state_dir = Path(state_dir)
        self.host = host if host is not None else self.state_dir.name
        self.timeout = timeout

    def configured(self, vm: str) -> bool:
        return True  # every process VM answers HTTP

    def check(self, vm: str) -> bool | None:
        try:
            port = int((self.state_dir / f"{vm}.port").read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return False
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read(4096).decode(errors="replace")
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        return response.status == 200 and body.startswith(f"vm {vm} on {self.host} token ")
