"""Bearer tokens for the API: who asks, and what they may do.

The tokens file (`api.tokens_file`) holds one token a line: ``TOKEN USER ROLE``, separated by
blanks; blank lines and lines starting with ``#`` are ignored. ``ROLE`` is ``viewer``,
``operator`` or ``admin``; each role may do what the roles before it may:

- ``viewer``: read (every ``GET``: reads need no token at all, a viewer token changes nothing
  but the name in the audit of a refused write);
- ``operator``: VM start, stop, migrate, host maintenance on and off;
- ``admin``: also the forced start (`vm force-start`), which overrides the safety rules' waits.

The file is a secret: like every secret of the cluster file (`ringfence.secrets`) it must be
readable by its owner only, else it is refused (`ConfigError`, naming ``api.tokens_file``).
Tokens are compared in constant time. The file is read again when its modification time
changes, so that a token can be revoked without restarting the agent.

Failure semantics: a malformed line is a `ConfigError` naming the file and the line (at
start-up, and when a changed file is read again: then the previous tokens stay in force and
the error is kept in :attr:`Tokens.error`). A missing file means no tokens: every write is
refused (401).
"""

from __future__ import annotations

import hmac
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ringfence.errors import ConfigError

__all__ = ["ROLES", "Identity", "Role", "Tokens", "parse_tokens", "role_allows"]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
MIN_TOKEN = 16


@dataclass(frozen=True)
class Identity:
    user: str
    role: Role


def role_allows(role: Role, needed: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def parse_tokens(text: str, file: str) -> dict[str, Identity]:
    """The tokens of a tokens file's text (see the module docstring)."""
    tokens: dict[str, Identity] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ConfigError(f"expected `TOKEN USER ROLE`, got {len(parts)} field(s)",
                              file=file, line=number)
        token, user, role = parts
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}: one of {', '.join(ROLES)}",
                              file=file, line=number)
        if len(token) < MIN_TOKEN:
            raise ConfigError(f"token of {user} is {len(token)} characters long; at least "
                              f"{MIN_TOKEN} random characters are needed", file=file,
                              line=number)
        if token in tokens:
            raise ConfigError(f"token of {user} is also {tokens[token].user}'s", file=file,
                              line=number)
        tokens[token] = Identity(user, role)
    return tokens


class Tokens:
    """The tokens of one file, read again when it changes (see the module docstring)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: dict[str, Identity] = {}
        self._load(strict=True)

    def _load(self, *, strict: bool) -> None:
        if self.path is None:
            return
        try:
            info = os.stat(self.path)
        except OSError:
            self._tokens, self._stamp = {}, None
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        from ringfence.secrets import check_secret_file

        try:
            check_secret_file(str(self.path), "api.tokens_file")
            tokens = parse_tokens(self.path.read_text(encoding="utf-8"), str(self.path))
        except (ConfigError, OSError) as exc:
            if strict:
                if isinstance(exc, OSError):
                    raise ConfigError(f"can not read {self.path}: {exc.strerror}",
                                      path="api.tokens_file") from None
                raise
            self.error = str(exc)
            return
        self._tokens, self._stamp, self.error = tokens, stamp, None

    def identify(self, token: str | None) -> Identity | None:
        """Whose token this is, or None."""
        if not token:
            return None
        with self._lock:
            self._load(strict=False)
            found = None
            for known, identity in self._tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    found = identity
            return found


def write_tokens_file(path: Path, lines: list[tuple[str, str, Role]]) -> None:
    """Write a tokens file readable by its owner only (the demo's admin token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# TOKEN USER ROLE (ringfence API tokens; see docs/operations.md)\n")
        for token, user, role in lines:
            out.write(f"{token} {user} {role}\n")
    path.chmod(0o600)
