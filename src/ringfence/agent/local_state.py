"""`FileLocalState`: the few facts a host keeps on its own disk across reboots.

One JSON file per key in one directory. Keys may contain any character (``forced/erp``): the
file name is the key percent-encoded, plus ``.json``. `put` is durable before it returns: the
value is written to a temporary file in the same directory, fsynced, renamed over the old
file, and the directory is fsynced so the rename itself survives a power cut. A reader
therefore sees the old value or the new one, never a mix. `put(key, None)` deletes the file
(and fsyncs the directory).

Failure semantics: `put` raises `OSError` when the value could not be made durable (the agent
must not act on a promise it could not record). `get` returns None for a key never written
and raises `LocalStateError` (an `OSError`) for a file that exists but can not be read or is
not a JSON object: a promise that can not be read is not silently forgotten.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["FileLocalState", "LocalStateError"]


class LocalStateError(OSError):
    """A local state file exists but is unreadable or not a JSON object."""


class FileLocalState:
    """`LocalState` in directory `dir` (created if missing, for its owner only)."""

    def __init__(self, dir: Path) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file that holds `key`."""
        if not key:
            raise ValueError("a local state key must not be empty")
        return self.dir / (quote(key, safe="") + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LocalStateError(exc.errno, f"can not read {path}: {exc.strerror}") from exc
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise LocalStateError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise LocalStateError(f"{path} holds {type(value).__name__}, not an object")
        return value

    def put(self, key: str, value: dict[str, Any] | None) -> None:
        path = self.path(key)
        if value is None:
            try:
                path.unlink()
            except FileNotFoundError:
                return
            self._sync_dir()
            return
        data = (json.dumps(value, sort_keys=True) + "\n").encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
