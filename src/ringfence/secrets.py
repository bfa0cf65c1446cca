"""Secret files named in the cluster file must be readable by their owner only.

The secrets: ``key_file`` (the heartbeat key), ``store.password_file``, ``store.tls.key_file``,
``fencing.<host>.params.password_file`` and ``identity_file``, ``alerts[].secret_file`` and
``alerts[].password_file``, ``api.tokens_file`` and ``api.tls.key_file``. Certificates and CA
files are public and not checked.

A secret whose mode gives its group or others any access (``chmod 644``, ``640``, ``604``…) is
refused at `ringfence agent` start-up: :func:`check_secrets` raises
:class:`ringfence.errors.ConfigError` naming the field and the fix (``chmod 600 FILE``), before
anything is started or created. ``ringfence agent --allow-insecure-secrets`` runs anyway;
:func:`check_secrets` then returns one warning per file, which the agent journals as a critical
alert at every start. A file that does not exist or can not be examined is not judged here: the
part that reads it reports that.

The allowance is process-wide (:func:`allow_insecure`), because the agent's construction reads
the key through :func:`ringfence.agent.runtime.read_key`, which checks it with
:func:`check_secret_file` too: a library caller that never set the allowance gets the safe
default, refusal.
"""

from __future__ import annotations

import os
import stat

from ringfence.config import ClusterConfig, LineMap, Loc, format_path
from ringfence.errors import ConfigError, Problem

__all__ = [
    "allow_insecure",
    "check_secret_file",
    "check_secrets",
    "insecurity",
    "secret_files",
]

_FENCE_SECRETS = ("password_file", "identity_file")
_allowed = False


def allow_insecure(allowed: bool) -> None:
    """`--allow-insecure-secrets`: secrets readable by others are warned about, not refused."""
    global _allowed
    _allowed = allowed


def secret_files(config: ClusterConfig) -> list[tuple[Loc, str]]:
    """Every secret file the cluster file names, with its field path."""
    found: list[tuple[Loc, str]] = []
    if config.key_file:
        found.append((("key_file",), config.key_file))
    if config.store.password_file:
        found.append((("store", "password_file"), config.store.password_file))
    if config.store.tls is not None and config.store.tls.key_file:
        found.append((("store", "tls", "key_file"), config.store.tls.key_file))
    for host, fence in sorted(config.fencing.items()):
        for name in _FENCE_SECRETS:
            value = fence.params.get(name)
            if isinstance(value, str) and value:
                found.append((("fencing", host, "params", name), value))
    for index, alert in enumerate(config.alerts):
        if alert.secret_file:
            found.append((("alerts", index, "secret_file"), alert.secret_file))
        if alert.password_file:
            found.append((("alerts", index, "password_file"), alert.password_file))
    if config.api is not None:
        if config.api.tokens_file:
            found.append((("api", "tokens_file"), config.api.tokens_file))
        if config.api.tls is not None and config.api.tls.key_file:
            found.append((("api", "tls", "key_file"), config.api.tls.key_file))
    return found


def insecurity(path: str) -> str | None:
    """What is wrong with the mode of the file *path*, or None (fine, or not there)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    who = [name for name, bits in (("its group", 0o070), ("everyone", 0o007)) if mode & bits]
    can = "read" if mode & 0o044 else "use"
    return f"{' and '.join(who)} can {can} it (mode {mode:04o})"


def _message(path: str, what: str) -> str:
    return (
        f"{path}: {what}; a secret must be readable by its owner only: chmod 600 {path} "
        "(or run ringfence agent --allow-insecure-secrets, which journals a critical alert "
        "at every start)"
    )


def check_secret_file(path: str, field: str) -> str | None:
    """Check one secret; :class:`ConfigError` naming *field* unless insecure secrets are
    allowed, in which case the warning is returned."""
    what = insecurity(path)
    if what is None:
        return None
    if not _allowed:
        raise ConfigError(_message(path, what), path=field)
    return f"{field}: {_message(path, what)}"


def check_secrets(
    config: ClusterConfig, *, file: str | None = None, lines: LineMap | None = None
) -> list[str]:
    """Check every secret file of *config*. Refused (one problem per file, naming *file*, the
    line and the field) unless insecure secrets are allowed; then the warnings are returned."""
    problems: list[Problem] = []
    for loc, path in secret_files(config):
        what = insecurity(path)
        if what is not None:
            line = None
            for end in range(len(loc), 0, -1):
                line = (lines or {}).get(loc[:end])
                if line is not None:
                    break
            problems.append(Problem(file=file, line=line, path=format_path(loc),
                                    message=_message(path, what)))
    if problems and not _allowed:
        raise ConfigError(problems=problems)
    return [f"{problem.path}: {problem.message}" for problem in problems]
