"""Paths an operator gives on the command line: checked before anything runs, and written so
that nothing is left half-written.

Every command-line option that takes a path has a :class:`PathArg` as its argparse ``type``,
which says what the path must be (:attr:`PathArg.kind`):

``input``
    an existing, readable file (a cluster or scenario file);
``input_any``
    an existing, readable file or directory (journals, state directories);
``output_file``
    a new file: it must not exist (ringfence never overwrites a file it was given), and its
    directory must exist and be writable;
``output_dir``
    a directory ringfence writes its own files into (reports, a status page, a state
    directory): an existing, writable directory, or a new one whose parent exists and is
    writable (only the last level is created, never a whole path of typing mistakes);
``data_file``
    a file that ringfence appends to (the process hypervisor's disk file): it may exist, but
    not as a directory, and its directory must exist.

A path that is not what its option expects ends the command at once with exit 2 and a message
naming the option, the path and what was expected (argparse's error path: never a traceback).

Writing: :func:`write_new_file` and :func:`write_file` write to a temporary file in the same
directory, flush it to disk and then link or rename it into place, so a reader (or a crash)
sees the whole file or none; they raise :class:`ringfence.errors.ConfigError` naming the path
when the write fails after all (the directory vanished, the disk is full, a race with another
writer). :func:`output_dir` creates an output directory the same careful way.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Literal

from ringfence.errors import ConfigError

__all__ = ["PathArg", "PathKind", "output_dir", "write_file", "write_new_file"]

PathKind = Literal["input", "input_any", "output_file", "output_dir", "data_file"]

_EXPECTED: dict[str, str] = {
    "input": "an existing file",
    "input_any": "an existing file or directory",
    "output_file": "the name of a new file",
    "output_dir": "a directory (an existing one, or a new one in an existing directory)",
    "data_file": "a file (existing or new) in an existing directory",
}


def _may(path: Path, mode: int) -> bool:
    """`os.access` for the effective user (the one that will open the file)."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _problem(path: Path, kind: str) -> str | None:
    """What is wrong with *path* for *kind*, or None."""
    expected = _EXPECTED[kind]
    text = str(path)
    if not text or "\0" in text:
        return f"{text!r} is not a path; expected {expected}"
    try:
        exists = path.exists()
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long, a loop of symbolic links...
        return f"{text}: {exc.strerror or exc}; expected {expected}"
    if kind in ("input", "input_any"):
        if not exists:
            parent = path.parent
            if not parent.is_dir():
                return f"{text}: no such directory {parent}; expected {expected}"
            return f"{text}: no such file; expected {expected}"
        if kind == "input" and is_dir:
            return f"{text} is a directory; expected {expected}"
        if not _may(path, os.R_OK | (os.X_OK if is_dir else 0)):
            return f"{text}: permission denied (can not read it); expected {expected}"
        return None
    if kind == "output_file" and exists:
        if is_dir:
            return f"{text} is a directory; expected {expected} (the file to write)"
        return (f"{text} already exists; expected {expected} (ringfence does not overwrite "
                "files: remove it or choose another name)")
    if kind == "data_file" and is_dir:
        return f"{text} is a directory; expected {expected}"
    if kind == "output_dir" and exists:
        if not is_dir:
            return f"{text} is a file; expected {expected}"
        if not _may(path, os.W_OK | os.X_OK):
            return f"{text}: permission denied (can not write into it); expected {expected}"
        return None
    if exists:  # data_file that exists as a file
        if not _may(path, os.W_OK):
            return f"{text}: permission denied (can not write it); expected {expected}"
        return None
    parent = path.parent
    if not parent.exists():
        return f"{text}: no such directory {parent}; expected {expected}"
    if not parent.is_dir():
        return f"{text}: {parent} is not a directory; expected {expected}"
    if not _may(parent, os.W_OK | os.X_OK):
        return f"{text}: permission denied (can not create files in {parent}); expected {expected}"
    return None


class PathArg:
    """An argparse ``type`` for a path option; see the module docstring for the kinds."""

    def __init__(self, kind: PathKind) -> None:
        self.kind: PathKind = kind
        self.__name__ = f"path ({kind})"  # what argparse calls the type in its messages

    def __call__(self, text: str) -> str:
        problem = _problem(Path(text), self.kind)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return text

    def __repr__(self) -> str:
        return f"PathArg({self.kind!r})"


def _failed(path: Path, action: str, exc: OSError) -> ConfigError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        reason = "permission denied"
    elif exc.errno == errno.ENOENT:
        reason = f"no such directory {path.parent}"
    elif exc.errno == errno.EISDIR:
        reason = "it is a directory"
    elif exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return ConfigError(f"can not {action}: {reason}", file=str(path))


def output_dir(path: Path) -> Path:
    """Make sure the output directory *path* exists (creating only its last level);
    :class:`ConfigError` naming it otherwise."""
    problem = _problem(path, "output_dir")
    if problem is not None:
        raise ConfigError(problem)
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise _failed(path, "create the directory", exc) from None
    return path


def _write_temporary(path: Path, data: bytes) -> Path:
    """*data* in a new temporary file beside *path*, flushed to disk (mode 0666 less umask)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise _failed(path, "write the file", exc) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _failed(path, "write the file", exc) from None
    return tmp


def write_new_file(path: Path, text: str) -> Path:
    """Write *text* to the new file *path*, whole or not at all; :class:`ConfigError` if it
    exists by now or can not be written."""
    tmp = _write_temporary(path, text.encode("utf-8"))
    try:
        try:
            os.link(tmp, path)  # fails if the name is taken: never replaces a file
        except FileExistsError:
            raise ConfigError(
                f"{path} already exists (ringfence does not overwrite files: remove it or "
                "choose another name)"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise _failed(path, "write the file", exc) from None
            # A filesystem without hard links: claim the name, then move the whole file there.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                raise ConfigError(f"{path} already exists (ringfence does not overwrite "
                                  "files)") from None
            except OSError as claim:
                raise _failed(path, "write the file", claim) from None
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def write_file(path: Path, text: str) -> Path:
    """Write *text* to *path*, replacing a file of that name whole (ringfence's own outputs in
    an output directory); :class:`ConfigError` if it can not be written."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; ringfence writes a file of that name here")
    tmp = _write_temporary(path, text.encode("utf-8"))
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise _failed(path, "write the file", exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path
