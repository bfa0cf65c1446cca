"""Open the coordination store a cluster file describes: SQLite or etcd.

Choice, from the ``store`` section:

- ``kind: sqlite`` — or no ``kind`` and no ``endpoints`` — is the embedded store: `SqliteStore`
  on ``path``, a file that every agent of the one machine shares;
- ``kind: etcd`` — or no ``kind`` and ``endpoints`` given — is `EtcdStore` on ``endpoints``,
  with ``tls`` (``ca_file``, ``cert_file``, ``key_file``).

Everything checkable without contacting the store is checked here and reported as a
`ConfigError` naming the field and the fix (``store.endpoints: etcd needs at least one
endpoint``); whether the store answers is the store's business (`StoreUnavailable` on use).
Opening never contacts the store, so an agent can start while the store is down. The etcd
client (`http.client`, `ssl`) is imported only when an etcd store is opened.

Timeouts follow the host lease: one store call (over every endpoint) waits at most
``timing.effective_store_timeout`` (by default the longest that lets a due renewal be tried
twice before the self-fence deadline: 1.5 s at the default 6 s lease; at most 2 s per request).
The agent's heartbeats and watchdog never wait for a store call (`Agent.beat`), so a slow store
only slows decisions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ringfence.config import ClusterConfig
from ringfence.errors import ConfigError, Problem
from ringfence.store.base import Store
from ringfence.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from ringfence.store.etcd import EtcdStore

__all__ = ["open_cluster_store", "open_store", "store_kind"]

_MAX_REQUEST_TIMEOUT = 2.0
_MIN_REQUEST_TIMEOUT = 0.2


def store_kind(config: ClusterConfig) -> str:
    """``sqlite`` or ``etcd``: the engine `open_store` would open (see the module docstring)."""
    store = config.store
    if store.kind is not None:
        return store.kind
    return "etcd" if store.endpoints else "sqlite"


def _call_budget(config: ClusterConfig, requests: int) -> float:
    """One request's share of a store call's timeout (`Timing.effective_store_timeout`, over
    every endpoint the call may try)."""
    budget = config.timing.effective_store_timeout / max(1, requests)
    return max(_MIN_REQUEST_TIMEOUT, min(_MAX_REQUEST_TIMEOUT, budget))


def _open_sqlite(config: ClusterConfig, create: bool) -> SqliteStore:
    store = config.store
    problems: list[Problem] = []
    if store.endpoints:
        problems.append(Problem(None, None, "store.endpoints",
                                "a sqlite store takes path, not endpoints "
                                "(set store.kind: etcd to use etcd)"))
    if store.tls is not None:
        problems.append(Problem(None, None, "store.tls",
                                "TLS applies to etcd only; a sqlite store is a local file"))
    if not store.path:
        problems.append(Problem(None, None, "store.path",
                                "the sqlite store needs path: the database file that every "
                                "agent on this machine shares (e.g. /var/lib/ringfence/store.db)"))
    if problems:
        raise ConfigError(problems=problems)
    assert store.path is not None
    path = Path(os.path.expanduser(store.path))
    if not path.parent.is_dir():
        raise ConfigError(f"the directory {str(path.parent)!r} does not exist; create it or "
                          "choose another path", path="store.path")
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a directory; path names the database file",
                          path="store.path")
    return SqliteStore(str(path), create=create, busy_timeout=_call_budget(config, 1))


def _open_etcd(config: ClusterConfig, host: str | None) -> EtcdStore:
    from ringfence.store.etcd import EtcdStore, parse_endpoint  # only for etcd

    store = config.store
    problems: list[Problem] = []
    if store.path is not None:
        problems.append(Problem(None, None, "store.path",
                                "an etcd store takes endpoints, not path "
                                "(set store.kind: sqlite to use a local file)"))
    if not store.endpoints:
        problems.append(Problem(None, None, "store.endpoints",
                                "etcd needs at least one endpoint, such as "
                                "https://etcd1.example:2379"))
    tls = store.tls
    files: dict[str, str | None] = {
        "ca_file": tls.ca_file if tls else None,
        "cert_file": tls.cert_file if tls else None,
        "key_file": tls.key_file if tls else None,
    }
    for name, file in files.items():
        if file is not None and not Path(os.path.expanduser(file)).is_file():
            problems.append(Problem(None, None, f"store.tls.{name}", f"file not found: {file}"))
    if (files["cert_file"] is None) != (files["key_file"] is None):
        missing = "key_file" if files["key_file"] is None else "cert_file"
        problems.append(Problem(None, None, f"store.tls.{missing}",
                                "a client certificate needs both cert_file and key_file"))
    secure = files["ca_file"] is not None or files["cert_file"] is not None
    endpoints: list[str] = []
    for index, text in enumerate(store.endpoints):
        try:
            parse_endpoint(text, tls=secure)
        except ValueError as exc:
            problems.append(Problem(None, None, f"store.endpoints[{index}]", str(exc)))
        else:
            endpoints.append(text)
    if problems:
        raise ConfigError(problems=problems)
    if host is not None:
        # This host's own member first: it answers fastest, and it fails over when it is cut off.
        local = [e for e in endpoints if parse_endpoint(e, tls=secure).host == host]
        endpoints = local + [e for e in endpoints if e not in local]
    expand = {name: os.path.expanduser(file) if file else None for name, file in files.items()}
    username, password = _etcd_credentials(config)
    return EtcdStore(
        endpoints,
        ca_file=expand["ca_file"],
        cert_file=expand["cert_file"],
        key_file=expand["key_file"],
        username=username,
        password=password,
        timeout=_call_budget(config, len(endpoints)),
    )


def _etcd_credentials(config: ClusterConfig) -> tuple[str | None, str | None]:
    """`store.username` with the password from `store.password_file` (never inline)."""
    store = config.store
    if store.username is None and store.password_file is None:
        return None, None
    if store.username is None or store.password_file is None:
        missing = "username" if store.username is None else "password_file"
        raise ConfigError("etcd authentication needs both store.username and "
                          "store.password_file", path=f"store.{missing}")
    try:
        password = Path(os.path.expanduser(store.password_file)).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"can not read {store.password_file}: {exc.strerror}",
                          path="store.password_file") from None
    if not password:
        raise ConfigError(f"{store.password_file} is empty", path="store.password_file")
    return store.username, password


def open_store(config: ClusterConfig, *, host: str | None, create: bool = False) -> Store:
    """The store of `config`, as host `host` uses it (None: an operator's tool, no host).
    `create`: a SQLite store may create its file (only a host that may bootstrap the cluster;
    etcd ignores it). The raw engine: agents guard it with their identity (`Agent`).

    Raises `ConfigError` for a store section that cannot work; never contacts the store."""
    if store_kind(config) == "etcd":
        return _open_etcd(config, host)
    return _open_sqlite(config, create)


def open_cluster_store(config: ClusterConfig) -> Store:
    """The store for an operator's tool: every call first proves that the store holds this
    cluster's identity (`store.identity`); an empty or foreign store is `StoreUnavailable`
    (`StoreForeign`), and nothing is read from it or written to it."""
    from ringfence.store.identity import IdentifiedStore, IdentityRef

    return IdentifiedStore(open_store(config, host=None), IdentityRef(), strict=True,
                           learn_cluster=config.name)
