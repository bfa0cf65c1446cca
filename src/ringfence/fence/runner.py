"""Run ClusterLabs fence agents (fence_ipmilan, fence_redfish, fence_apc_snmp, ...).

Why hand-written: the fence-agents interface is a command-line program per device, and its
stable machine interface is small — arguments as ``name=value`` lines on standard input, the
outcome as the exit status — so a library would add nothing but a dependency. Passing the
arguments on stdin (never on the command line) keeps the password out of ``ps`` and
``/proc/PID/cmdline``.

The protocol spoken here (fence-agents' ``fencing.py``):

* one ``name=value`` per line on stdin: ``action=off``, ``plug=...``, ``ip=...``,
  ``username=...``, ``password=...``; booleans are sent as ``1``/``0``;
* a parameter ``password_file`` is not sent: the file is read (through `secret_loader`) and
  its content sent as ``password``. The password is never logged, and any text quoted from
  the agent (its stderr) has the password masked;
* exit status: for ``off``/``on``/``reboot`` 0 = done, anything else = failed; for
  ``status`` 0 = on, 2 = off, 1 (or anything else) = error.

A fence (`FenceAgentRunner.fence`) runs in a background thread and is polled through its
handle, never blocking the decision cycle:

1. ``action=off``; then ``action=status`` until it reports off: soon at first
   (`STATUS_BACKOFF`: most devices are off within a moment of their ``off``, and each second
   waited here is a second of the VMs' downtime), then every `poll_interval`. An
   ``off`` that fails, or a status that does not reach "off" within its share of the time
   left, is retried (at most `retries` more times); each attempt's share is the time left
   divided by the attempts left, so the last attempt gets a real chance.
2. The whole operation is bounded by `timeout`: a hanging agent is stopped, and only then
   does the handle report failure. Stopping means every process of the agent's session is
   killed (each call runs in a session of its own, so this reaches the tools it runs even
   when they left its process group) and gone; a failed fence therefore never acts later.
   ``ok`` is True only when a ``status`` said off. `RunnerHandle.cancel` stops it the same
   way at once (the manager does so when a watchdog proof made the fence unnecessary). A
   process that left the session itself (``setsid``) can not be found, and is not stopped.
3. ``reboot`` is off, confirm off, then ``action=on``; the result is reported as soon as off
   is confirmed (the `FenceAgent` protocol), powering on follows in the same thread and its
   outcome is logged and kept in ``handle.power_on``.

`fence` never raises: a missing agent, an unreadable password file, a wrong host, everything
becomes a failed `FenceResult` whose detail says what happened, with the agent's stderr tail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ringfence.fence.base import FenceResult

if TYPE_CHECKING:
    from ringfence.config import FenceConfig

__all__ = ["FenceAgentRunner", "RunnerHandle", "read_secret_file"]

log = logging.getLogger("ringfence.fence")

AGENT_DIR = Path("/usr/sbin")
STATUS_ON, STATUS_OFF = 0, 2
STATUS_BACKOFF = (0.1, 0.25, 0.5)  # seconds before the first status polls after an "off"
TAIL = 600  # characters of the agent's stderr quoted in a failure


def _session_members(session: int) -> list[int]:
    """Processes of one session (by /proc/PID/stat), the leader included."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[0] not in ("Z", "X") and int(fields[3]) == session:
            members.append(int(entry.name))
    return members


def stop_session(process: subprocess.Popen[bytes], wait: float = 5.0) -> bool:
    """Kill every process of the session `process` leads and wait until none is left;
    False if some survived `wait` (then it is logged)."""
    deadline = time.monotonic() + wait
    while True:
        members = _session_members(process.pid)
        for pid in members:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            process.communicate(timeout=0.1)
        if not members and process.poll() is not None:
            return True
        if time.monotonic() >= deadline:
            log.error("fence agent session %d: processes %s survive SIGKILL", process.pid,
                      members)
            return False
        time.sleep(0.02)


def read_secret_file(path: str) -> str:
    """The content of a secret file without its final newline."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


class RunnerHandle:
    """The handle of one fence operation: `result` is None while it runs."""

    def __init__(self, on_done: Callable[[], None] | None = None) -> None:
        self._result: FenceResult | None = None
        self._on_done = on_done
        self._done = threading.Event()
        self.power_on: FenceResult | None = None  # reboot only: how powering on ended
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def result(self) -> FenceResult | None:
        return self._result

    def cancel(self) -> None:
        """Stop the operation (never blocks): no new call starts, the running one is killed;
        `result` reports the stop once every process of it is gone."""
        self.cancelled.set()
        with self._lock:
            process = self._process
        if process is not None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> FenceResult | None:
        """Block until the result is known (for tools and tests, not for decision code)."""
        self._done.wait(timeout)
        return self._result

    def _finish(self, result: FenceResult) -> None:
        if self._result is None:
            self._result = result
            self._done.set()
            if self._on_done is not None:
                self._on_done()  # the decision cycle polls this handle: now, not at its slot


class _Failed(Exception):
    pass


class _Cancelled(Exception):
    """The handle was cancelled: stop at once."""


class FenceAgentRunner:
    """`FenceAgent` for one host through a ClusterLabs fence agent.

    `host`: the host this agent fences (its entry in the cluster file's ``fencing``);
    `agent`: a name in /usr/sbin (``fence_ipmilan``) or an absolute path; `params`: the
    agent's parameters; `timeout`: seconds for the whole operation; `retries`: further
    attempts after a failed one; `secret_loader`: reads a ``password_file``; `on_done`:
    called (from the fence's thread, so it must not block) when a result is known, so that
    the agent's runtime wakes its decision cycle at once instead of at its next slot.
    """

    def __init__(self, host: str, agent: str, params: Mapping[str, str | int | float | bool], *,
                 timeout: float, retries: int,
                 secret_loader: Callable[[str], str] = read_secret_file,
                 poll_interval: float = 1.0,
                 on_done: Callable[[], None] | None = None) -> None:
        self.host = host
        self.on_done = on_done
        self.agent = agent
        self.params = dict(params)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.secret_loader = secret_loader
        self.poll_interval = poll_interval
        self._handle: RunnerHandle | None = None

    @classmethod
    def from_config(cls, host: str, config: FenceConfig, *, timeout: float = 60.0,
                    retries: int = 2) -> FenceAgentRunner:
        """The runner for the cluster file's ``fencing.HOST`` entry."""
        return cls(host, config.agent, config.params, timeout=timeout, retries=retries)

    @property
    def executable(self) -> Path:
        return Path(self.agent) if os.path.isabs(self.agent) else AGENT_DIR / self.agent

    # ------------------------------------------------------------------ protocol
    def fence(self, host: str, action: Literal["off", "reboot"]) -> RunnerHandle:
        handle = RunnerHandle(self.on_done)
        try:
            if host != self.host:
                raise _Failed(f"this fence agent is configured for {self.host}, not {host}")
            if action not in ("off", "reboot"):
                raise _Failed(f"unknown fence action {action!r}")
            if os.sep in self.agent and not os.path.isabs(self.agent):
                raise _Failed(f"fence agent {self.agent!r}: give a name in {AGENT_DIR} or an "
                              f"absolute path")
            thread = threading.Thread(target=self._run, args=(handle, action),
                                      name=f"fence-{host}", daemon=True)
            thread.start()
        except _Failed as exc:
            handle._finish(FenceResult(False, str(exc)))
        except Exception as exc:  # fence never raises: even a failed thread start is a result
            handle._finish(FenceResult(False, f"fencing {host} could not start: {exc}"))
        return handle

    # ------------------------------------------------------------------ the operation
    def _run(self, handle: RunnerHandle, action: Literal["off", "reboot"]) -> None:
        deadline = time.monotonic() + self.timeout
        started = time.monotonic()
        self._handle = handle
        try:
            lines, secrets = self._arguments()
            detail = self._off_confirmed(lines, secrets, deadline)
        except _Cancelled:
            why = (f"fencing {self.host} stopped after {time.monotonic() - started:.1f}s "
                   f"without an answer: the agent's processes are killed")
            log.warning("%s", why)
            handle._finish(FenceResult(False, why))
            return
        except _Failed as exc:
            log.warning("fencing %s failed: %s", self.host, exc)
            handle._finish(FenceResult(False, str(exc)))
            return
        except Exception as exc:  # a bug must still end the operation, as a failure
            log.exception("fencing %s crashed", self.host)
            handle._finish(FenceResult(False, f"fencing {self.host} crashed: {exc!r}"))
            return
        log.info("fencing %s: %s", self.host, detail)
        handle._finish(FenceResult(True, detail))
        if action == "reboot":
            handle.power_on = self._power_on(lines, secrets)

    def _arguments(self) -> tuple[list[str], list[str]]:
        lines: list[str] = []
        secrets: list[str] = []
        for name, value in self.params.items():
            if name == "action":
                continue
            if name == "password_file":
                try:
                    secret = self.secret_loader(str(value))
                except OSError as exc:
                    raise _Failed(f"can not read password_file {value}: "
                                  f"{exc.strerror or exc}") from None
                secrets.append(secret)
                lines.append(f"password={secret}")
                continue
            text = ("1" if value else "0") if isinstance(value, bool) else str(value)
            if "\n" in text or "\r" in text:
                raise _Failed(f"fence parameter {name} contains a line break")
            if name == "password" and text:
                secrets.append(text)
            lines.append(f"{name}={text}")
        return lines, secrets

    def _off_confirmed(self, lines: list[str], secrets: list[str], deadline: float) -> str:
        attempts = self.retries + 1
        errors: list[str] = []
        for attempt in range(1, attempts + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            attempt_end = time.monotonic() + left / (attempts - attempt + 1)
            code, err = self._call(lines, "off", secrets, deadline)
            if code != 0:
                errors.append(f"attempt {attempt}: off {self._describe(code, err)}")
                self._pause(attempt_end, deadline)
                continue
            last = "no status check finished"
            polls = 0
            while True:
                code, err = self._call(lines, "status", secrets, deadline)
                if code == STATUS_OFF:
                    return (f"{self.host} is off: {self.agent} off, then status reported off "
                            f"(attempt {attempt})")
                last = "still on" if code == STATUS_ON else self._describe(code, err)
                delay = (min(self.poll_interval, STATUS_BACKOFF[polls])
                         if polls < len(STATUS_BACKOFF) else self.poll_interval)
                polls += 1
                if time.monotonic() + delay >= min(attempt_end, deadline):
                    break
                time.sleep(delay)
            errors.append(f"attempt {attempt}: off succeeded but status: {last}")
        if not errors:
            errors.append("no attempt started")
        raise _Failed(f"fencing {self.host} with {self.agent} failed within "
                      f"{self.timeout:g}s: " + "; ".join(errors[-3:]))

    def _pause(self, attempt_end: float, deadline: float) -> None:
        delay = min(self.poll_interval, attempt_end - time.monotonic(),
                    deadline - time.monotonic())
        if delay > 0:
            time.sleep(delay)

    def _power_on(self, lines: list[str], secrets: list[str]) -> FenceResult:
        deadline = time.monotonic() + self.timeout
        code, err = self._call(lines, "on", secrets, deadline)
        if code == 0:
            log.info("fencing %s: powered on again", self.host)
            return FenceResult(True, f"{self.host} powered on")
        why = f"powering {self.host} on failed: {self._describe(code, err)}"
        log.warning("%s", why)
        return FenceResult(False, why)

    def status(self, timeout: float) -> tuple[str, str]:
        """One ``status`` call, bounded by `timeout` (for the fence drill, not for decision
        code: it blocks). Returns ("on" | "off" | "error", detail); never raises."""
        try:
            lines, secrets = self._arguments()
            code, err = self._call(lines, "status", secrets, time.monotonic() + timeout)
        except (_Failed, _Cancelled) as exc:
            return "error", str(exc) or "cancelled"
        if code == STATUS_ON:
            return "on", err
        if code == STATUS_OFF:
            return "off", err
        return "error", self._describe(code, err)

    def power_on(self) -> FenceResult:
        """``action=on`` once, bounded by the runner's timeout (the drill's last step; it
        blocks). Never raises."""
        try:
            lines, secrets = self._arguments()
            return self._power_on(lines, secrets)
        except (_Failed, _Cancelled) as exc:
            return FenceResult(False, str(exc) or "cancelled")

    @staticmethod
    def _describe(code: int | None, err: str) -> str:
        what = "timed out" if code is None else f"exit status {code}"
        return f"{what}: {err}" if err else what

    def _call(self, lines: list[str], action: str, secrets: list[str],
              deadline: float) -> tuple[int | None, str]:
        """Run the agent once; (exit status or None on timeout, masked stderr tail). On a
        timeout or a cancellation, every process of the call's session is killed and gone
        before this returns (or raises `_Cancelled`)."""
        handle = self._handle
        left = deadline - time.monotonic()
        if handle is not None and handle.cancelled.is_set():
            raise _Cancelled
        if left <= 0:
            return None, ""
        stdin = "\n".join([f"action={action}", *lines]) + "\n"
        log.debug("running %s action=%s (%d parameters)", self.executable, action, len(lines))
        try:
            process = subprocess.Popen([str(self.executable)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       start_new_session=True)
        except OSError as exc:
            raise _Failed(f"can not run fence agent {self.executable}: "
                          f"{exc.strerror or exc}") from None
        if handle is not None:
            with handle._lock:
                handle._process = process
            if handle.cancelled.is_set():  # cancelled while it started
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
        timed_out, err = False, b""
        data: bytes | None = stdin.encode()
        try:
            while True:  # in slices, so that a cancellation is acted on at once
                try:
                    _, err = process.communicate(data, timeout=max(0.0, min(
                        0.1, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    data = None  # sent with the first call
                    if time.monotonic() >= deadline:
                        timed_out = True
                        break
                    if handle is not None and handle.cancelled.is_set():
                        break
        finally:
            if handle is not None:
                with handle._lock:
                    handle._process = None
        cancelled = handle is not None and handle.cancelled.is_set()
        if timed_out or cancelled:
            stop_session(process)
            if cancelled:
                raise _Cancelled
            return None, self._mask(err, secrets)
        stop_session(process)  # a tool it started in the background must not act later
        return process.returncode, self._mask(err, secrets)

    @staticmethod
    def _mask(raw: bytes, secrets: list[str]) -> str:
        text = raw.decode(errors="replace")
        for secret in secrets:
            if secret:
                text = text.replace(secret, "****")
        return text.strip()[-TAIL:]
