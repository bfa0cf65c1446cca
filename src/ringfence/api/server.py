"""Serving the app: uvicorn in a background thread (every agent, and `ringfence demo`).

The thread runs its own event loop; nothing it does waits for the agent, and the agent never
waits for it (the API reads the store over its own connection). Requests are handled by
uvicorn's loop and, for the synchronous endpoints, by its thread pool.

Failure semantics: :meth:`ApiServer.start` returns once the socket listens, or raises
:class:`ringfence.errors.ConfigError` naming ``api.listen`` when it can not (address in use,
not on this host, a certificate that does not load), within `timeout` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import uvicorn

from ringfence.errors import ConfigError

__all__ = ["ApiServer", "split_listen"]


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
