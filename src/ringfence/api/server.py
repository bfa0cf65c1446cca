"""Serving the app: uvicorn in a background thread (every agent, and `ringfence demo`).

The thread runs its own event loop; nothing it does waits for the agent, and the agent never
waits for it (the API reads the store over its own connection). Requests are handled by
uvicorn's loop and, for the synchronous endpoints, by its thread pool.

TLS (`api.tls`: `cert_file`, the certificate chain in PEM, and `key_file`, its private key) is
checked before anything listens (:func:`tls_files`): both are needed, both must be readable,
and they must load together as a certificate chain and its key.

Failure semantics: :func:`tls_files` raises :class:`ringfence.errors.ConfigError` naming
``api.tls.cert_file`` or ``api.tls.key_file`` (a missing or unreadable file, a certificate that
does not load, a key that is not the certificate's). :meth:`ApiServer.start` returns once the
socket listens, or raises `ConfigError` naming ``api.listen`` when it can not (address in use,
not on this host), within `timeout` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from typing import Any

import uvicorn

from ringfence.config.services import ApiTLS
from ringfence.errors import ConfigError

__all__ = ["ApiServer", "split_listen", "tls_files"]


def tls_files(tls: ApiTLS | None) -> tuple[str | None, str | None]:
    """The (certificate, key) files to serve HTTPS with, checked; (None, None) without TLS."""
    if tls is None:
        return None, None
    if not tls.cert_file or not tls.key_file:
        missing = "cert_file" if not tls.cert_file else "key_file"
        raise ConfigError(f"HTTPS needs both cert_file and key_file; {missing} is missing",
                          path=f"api.tls.{missing}")
    for field, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise ConfigError(f"can not read {path}: {exc.strerror}",
                              path=f"api.tls.{field}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        why = exc.reason or str(exc)
        field = "key_file" if "KEY" in str(why).upper() else "cert_file"
        raise ConfigError(f"{tls.cert_file} and {tls.key_file} do not load as a certificate "
                          f"chain (PEM) and its private key: {why}",
                          path=f"api.tls.{field}") from None
    return tls.cert_file, tls.key_file


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class ApiServer:
    def __init__(self, app: Any, host: str, port: int, *, certfile: str | None = None,
                 keyfile: str | None = None) -> None:
        self.config = uvicorn.Config(app, host=host, port=port, ssl_certfile=certfile,
                                     ssl_keyfile=keyfile, log_level="warning",
                                     access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, name="ringfence-api", daemon=True)
        self.error: BaseException | None = None
        self.scheme = "https" if certfile else "http"

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # SystemExit from a failed bind, a bad certificate
            self.error = exc

    def start(self, timeout: float = 10.0) -> None:
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # we report it
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                why = f" ({self.error})" if self.error and str(self.error) not in ("1", "") \
                    else ""
                raise ConfigError(f"the API can not listen on {self.config.host}:"
                                  f"{self.config.port}{why}: is the port in use, or the "
                                  f"address not on this host?", path="api.listen")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.config.port)

    @property
    def url(self) -> str:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{self.port}"

    def stop(self, timeout: float = 3.0) -> None:
        self.server.should_exit = True
        with contextlib.suppress(RuntimeError):
            self.thread.join(timeout)
