"""Linux network namespaces, seen from the root namespace: `ip` and `nft` commands, and the
processes that live in a namespace.

A namespace's processes are found by the inode of their ``/proc/PID/ns/net``, compared with the
inode of the namespace's bind mount in ``/run/netns`` (what ``ip netns pids`` does). Cgroups
can not be used: ``ip netns exec`` remounts ``/sys``, so a process inside a namespace does not
see the cgroup tree, and the lab needs no cgroup of its own. Only the standard library is used
here, because the lab's fence agent imports this module and a fence agent's start-up time is
part of every failover it measures.

Failure semantics: `run` raises `LabError` with the command and its stderr when a command the
lab needs fails; the ``*_quiet`` variants and everything used during teardown never raise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    """A command the lab needs failed, or the machine can not host a lab."""


def run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 20.0,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; `LabError` naming it and its stderr if it fails (with `check`)."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout:g}s") from None
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    """``ip [-n NS] ARGS``."""
    run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def in_ns(ns: str, *argv: str, check: bool = True, stdin: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    """Run a short command inside namespace `ns`."""
    return run(["ip", "netns", "exec", ns, *argv], check=check, stdin=stdin)


def nft(ns: str, script: str) -> None:
    """Load an nftables script inside namespace `ns` (atomically: all of it or nothing)."""
    in_ns(ns, "nft", "-f", "-", stdin=script)


def add(name: str) -> None:
    ip("netns", "add", name)


def delete_quiet(name: str) -> None:
    with contextlib.suppress(LabError):
        ip("netns", "del", name, check=False)


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def names() -> list[str]:
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir())
    except OSError:
        return []


def inode(name: str) -> int:
    """The identity of namespace `name`: the inode that its processes' ns/net link shows."""
    return os.stat(NETNS_DIR / name).st_ino


def pids_in(ns_inode: int, *, exclude: Iterable[int] = ()) -> list[int]:
    """Every process whose network namespace is `ns_inode` (not this process)."""
    skip = {os.getpid(), *exclude}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in skip:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == ns_inode:
                found.append(pid)
        except OSError:
            continue
    return sorted(found)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def signal_pids(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def kill_all(ns_inode: int, *, within: float = 10.0) -> int:
    """Power off: SIGSTOP then SIGKILL every process of the namespace, again and again,
    until none is left (a process forked meanwhile is caught on the next round). Returns how
    many processes were killed; `LabError` if some survive `within` seconds."""
    killed: set[int] = set()
    deadline = time.monotonic() + within
    while True:
        pids = [p for p in pids_in(ns_inode) if _alive(p)]
        if not pids:
            return len(killed)
        if time.monotonic() > deadline:
            raise LabError(f"processes {pids} survive SIGKILL")
        signal_pids(pids, signal.SIGSTOP)
        signal_pids(pids, signal.SIGKILL)
        killed.update(pids)
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (a killed process lingers as one until it is reaped)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def alive_in(ns_inode: int, keep: Callable[[int], bool] = lambda pid: True) -> list[int]:
    return [p for p in pids_in(ns_inode) if _alive(p) and keep(p)]


def wait_exited(pids: Iterable[int], within: float) -> None:
    """Wait (at most `within` seconds) until every one of `pids` has really exited and
    closed its files (a killed QEMU's disk locks are then free). `kill_all` is not enough for
    that: a killed multi-threaded process's leader shows as a zombie while its other threads
    still tear down and hold its files, and it leaves its namespace before it is gone."""
    deadline = time.monotonic() + within
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                threads = len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                break  # gone
            if threads <= 1 and not _alive(pid):
                break  # a zombie whose threads are all gone holds no files
            time.sleep(0.01)
