"""Listing a directory the agent looks into at every cycle (its operator inbox, the process
hypervisor's VM state), with ``os.scandir`` instead of pathlib's ``is_dir`` and ``glob``, whose
machinery cost more than the rest of an idle cycle's bookkeeping (issue 17)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

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
