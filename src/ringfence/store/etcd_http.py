"""HTTP/1.1 to one etcd member's JSON gateway: one persistent connection, the standard
library's `http.client`, and a failure split that says whether the request can have reached etcd.

Why not ``requests`` (through etcd3gw), as before: an idle agent makes a few store calls a
second, and each cost about 1.3 ms of CPU through ``requests`` (session merging, adapters,
urllib3's pool) against about 0.3 ms through `http.client` on the same persistent connection
(measured on loopback etcd, 2000 count-only range reads each; urllib3 alone: 0.6 ms). That
was a quarter of an idle agent's budget of 1 % of a core (issue 17).

What a caller is told, and why it is enough for `EtcdStore`'s failure semantics:

- `NotSent`: the connection or its TLS handshake failed (refused, unreachable, unresolvable,
  timed out, certificate refused by either side). The request was not written on a
  connection that stood, so it was certainly not applied.
- `Lost`: anything that went wrong once the connection stood: the request may have been
  sent, read and applied, whatever happened to its answer.
- an `Answer` (status and body) when etcd answered; what it means is the caller's.

A kept connection is reused only while it is quiet: one that the peer closed (or that has
anything unread on it) is dropped and a new one opened first, so that a member's idle-close
is a fresh connection (`NotSent` if it fails), not a request lost on a dead one. That is
what urllib3 did for ``requests``.

TLS 1.3 ends the client's side of the handshake before the member has checked the client's
certificate: a refused certificate shows only in the member's first answer (as an alert, or
the connection closed). So a new TLS 1.3 connection first asks ``GET /version`` (harmless,
answered without authentication) and counts as made only once that is answered; a request is
never the first thing on a connection whose handshake the member may still refuse. It costs
one round trip per connection, and connections are kept.

TLS: verified against `ca_file`, else certifi's bundle (the one ``requests`` used), never a
file the environment names (``SSL_CERT_FILE``); a client certificate when given. No proxy
is ever used (`http.client` reads no proxy variables).
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Answer", "GatewayConnection", "GatewayStream", "Lost", "NotSent", "tls_context"]

JSON_HEADERS = {"Content-Type": "application/json",
                # Without an Accept header the gateway passes the call on otherwise: with
                # authentication on and no token, etcd then answers "permission denied"
                # instead of "user name is empty" (as it did for requests' "*/*").
                "Accept": "application/json",
                # A member that lost its leader says so at once instead of waiting for one.
                "Grpc-Metadata-hasleader": "true"}


class NotSent(Exception):
    """The request certainly did not reach etcd: no connection (or TLS session) could be made."""


class Lost(Exception):
    """The request may have reached etcd (and been applied); no usable answer came back."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    body: bytes


def tls_context(ca_file: str | None, cert_file: str | None,
                key_file: str | None) -> ssl.SSLContext:
    """A client context that verifies the member against `ca_file` (else certifi's bundle,
    without reading the environment) and presents `cert_file`/`key_file` when given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    if ca_file is None:
        import certifi

        ca_file = certifi.where()
    context.load_verify_locations(cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


def _quiet(sock: socket.socket) -> bool:
    """Nothing to read on an idle kept connection: neither the peer's close nor stray data."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class GatewayStream:
    """A streaming answer (HTTP 200), read line by line on a connection of its own by one
    thread, which closes it; `interrupt`, from any other thread, ends its wait in `lines`."""

    def __init__(self, connection: http.client.HTTPConnection,
                 response: http.client.HTTPResponse) -> None:
        self._connection = connection
        self._response = response

    def lines(self) -> Iterator[bytes]:
        """The non-empty lines of the stream until it ends; OSError or HTTPException when
        it is cut or stays silent longer than its idle time."""
        while True:
            line = self._response.readline()
            if not line:
                return
            if line.strip():
                yield line

    def interrupt(self) -> None:
        """End the reader's wait (it sees the stream cut); safe from any thread, as closing
        is not: http.client's objects are not shared between threads."""
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown (not TLS's): it ends a recv blocked in another
                # thread, which closing the socket does not.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection (the reading thread's part)."""
        self._connection.close()


class GatewayConnection:
    """One member's gateway at `host`:`port` (``https`` when `context` is given), one
    persistent connection, not thread-safe (`EtcdStore` serialises its calls). `headers`
    go with every request (`EtcdStore` keeps its auth token there). `timeout`: seconds for
    the connection and for each read of an answer."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext | None,
                 timeout: float) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        self._connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> Answer:
        """POST `body` (JSON) to `path`; `NotSent` or `Lost` as the module docstring says."""
        connection = self._kept() or self._opened()
        try:
            connection.request("POST", path, body, self._request_headers())
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()  # in an unknown state: never reused
            raise Lost(f"no answer ({_describe(exc)})") from exc
        if response.will_close:
            self.close()
        return Answer(response.status, response.reason, data)

    def stream(self, path: str, body: bytes, *, idle: float) -> GatewayStream:
        """POST `body` to `path` on a new connection and return its streaming answer, which
        may stay silent `idle` seconds between lines. `NotSent` as for `post`; any failure
        after that, or an HTTP status other than 200, is OSError or HTTPException."""
        connection = self._connected()
        try:
            assert connection.sock is not None
            connection.sock.settimeout(idle)
            connection.request("POST", path, body, self._request_headers())
            response = connection.getresponse()
            if response.status != 200:
                detail = response.read(200).decode(errors="replace")
                raise http.client.HTTPException(f"HTTP {response.status}: {detail}")
        except BaseException:
            connection.close()
            raise
        return GatewayStream(connection, response)

    def close(self) -> None:
        """Close the kept connection (the next request opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _request_headers(self) -> dict[str, str]:
        return {**JSON_HEADERS, **self.headers}

    def _kept(self) -> http.client.HTTPConnection | None:
        """The kept connection if it can carry a request, else None (and it is closed)."""
        connection = self._connection
        if connection is None:
            return None
        if connection.sock is not None and _quiet(connection.sock):
            return connection
        self.close()
        return None

    def _opened(self) -> http.client.HTTPConnection:
        """A new connection, kept; `NotSent` if it (or its TLS handshake) can not be made."""
        self._connection = self._connected()
        return self._connection

    def _connected(self) -> http.client.HTTPConnection:
        """A new connection whose handshake both sides accepted, else `NotSent`."""
        connection = self._new_connection()
        try:
            connection.connect()
            if isinstance(connection.sock, ssl.SSLSocket) and \
                    connection.sock.version() == "TLSv1.3":
                _confirm(connection)
        except (OSError, http.client.HTTPException) as exc:
            # refused, unreachable, unresolvable, timed out, a certificate refused
            connection.close()
            raise NotSent(f"cannot connect ({_describe(exc)})") from exc
        return connection

    def _new_connection(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                           context=self.context)


def _confirm(connection: http.client.HTTPConnection) -> None:
    """Wait for the member's first answer (see the module docstring: TLS 1.3's handshake is
    not settled before it); any answer will do, OSError or HTTPException if none comes."""
    connection.request("GET", "/version")
    connection.getresponse().read()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
