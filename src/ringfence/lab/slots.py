"""Which lab is which: every running lab holds one *slot* (0..99), a lock on
``/run/ringfence-lab/slot-<n>.lock`` kept for its whole life. The slot picks the lab's
namespace names and addresses (see `ringfence.lab.topology`), so two labs on one machine never
share a name or an address, and a lab never touches a namespace of another slot.

The lock is an ``flock``: the kernel drops it when the lab's process ends, however it ends, so a
crashed lab never keeps its slot. A slot whose namespaces still exist (a lab killed with
SIGKILL before its teardown) is skipped, not reused and not cleaned: they are not ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ringfence.lab import netns
from ringfence.lab.netns import LabError

LOCK_DIR = Path("/run/ringfence-lab")
SLOTS = 100


class Slot:
    def __init__(self, number: int, fd: int) -> None:
        self.number = number
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = -1


def take_slot() -> Slot:
    """The lowest free slot; `LabError` if all are taken."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    leftover = {name.split("-", 1)[0] for name in netns.names() if name.startswith("rfl")}
    for number in range(SLOTS):
        fd = os.open(LOCK_DIR / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if f"rfl{number}" in leftover:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return Slot(number, fd)
    raise LabError(f"all {SLOTS} lab slots are in use (or hold namespaces left behind)")
