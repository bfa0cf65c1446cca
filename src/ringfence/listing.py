"""Listing a directory the agent looks into at every cycle (its operator inbox, the process
hypervisor's VM state), with ``os.scandir`` instead of pathlib's ``is_dir`` and ``glob``, whose
machinery cost more than the rest of an idle cycle's bookkeeping (issue 17), and only when the
directory may have changed since it was last read (`Stamp`).

Written here rather than taken from a library: what is needed is one ``stat`` and the rule
for the kernel's coarse file times below; a file-watching library (inotify) would add a thread
or a descriptor per directory and still need a rescan when its queue overflows.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

# The kernel stamps file times from a coarse clock (one jiffy: at most 10 ms behind the real
# time, at HZ=100). A directory whose mtime is this much older than the moment a reading began
# can not change again without its mtime changing too; a younger one might, within the same
# jiffy, so it proves nothing.
RACY_NS = 20_000_000

# What pathlib's glob took for "no such directory" (its is_dir() and a PermissionError).
NO_DIRECTORY = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP, errno.EACCES,
                          errno.EPERM})


def names_in(directory: str | os.PathLike[str], match: Callable[[str], bool]) -> list[str]:
    """The sorted names in `directory` that `match` accepts; none if it is missing, not a
    directory or may not be read (as pathlib's glob found none). Other errors raise OSError."""
    try:
        with os.scandir(directory) as entries:
            return sorted(entry.name for entry in entries if match(entry.name))
    except OSError as exc:
        if exc.errno in NO_DIRECTORY:
            return []
        raise


class Stamp:
    """Whether a directory's entries may have changed since it was last read: its inode and
    mtime, noted right before a reading. An entry created, removed or renamed (an atomic
    ``os.replace`` of a file included) changes the mtime; a file rewritten in place does not,
    so `Stamp` suits directories whose files are only ever replaced whole, as the inbox's and
    the VM state files are. `unchanged` is never True by mistake; it is False when in doubt
    (the mtime was too young to prove anything, or the directory can not be stat'ed)."""

    __slots__ = ("_directory", "_seen")

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._directory = directory
        self._seen: tuple[int, int] | None = None

    def _now(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._directory)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def unchanged(self) -> bool:
        """True only if the directory has certainly not changed since the last `reading`."""
        return self._seen is not None and self._now() == self._seen

    def reading(self) -> None:
        """Call right before reading the directory: what the reading finds is what
        `unchanged` vouches for afterwards."""
        began = time.time_ns()
        now = self._now()
        self._seen = now if now is not None and began - now[1] >= RACY_NS else None

    def forget(self) -> None:
        """The next `unchanged` is False (the directory must be read again)."""
        self._seen = None
