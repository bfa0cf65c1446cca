"""The multi-host coordination store: etcd v3 through its JSON gateway.

etcd is the engine (Raft, linearizable reads and transactions, leases); this module only maps the
`Store` protocol onto etcd's v3 JSON gateway (etcd >= 3.4, paths under ``/v3/``):

===================  ==========================================================================
``revision()``       ``/v3/kv/range`` (count only) — the header's revision
``get``              ``/v3/kv/range`` on one key
``get_prefix``       ``/v3/kv/range`` from the prefix to its end: one request, one revision
``txn``              ``/v3/kv/txn``: compares MOD / CREATE / VALUE / LEASE, ``request_put`` and
                     ``request_delete_range``; keys and values base64, as the gateway needs
``grant``            ``/v3/lease/grant``; etcd counts whole seconds, so the TTL is rounded up
                     (and etcd raises it to its minimum, about 1.5 × the election timeout)
``keepalive``        ``/v3/lease/keepalive``: one request, one answer; TTL 0 means gone
``time_to_live``     ``/v3/lease/timetolive``: TTL -1 means gone (whole seconds)
``revoke``           ``/v3/lease/revoke``; "lease not found" is not an error
===================  ==========================================================================

Reads are linearizable (never ``serializable``). Revisions come from response headers. Values
are canonical JSON (`canonical_json`), so a VALUE compare is a byte compare of canonical JSON: it
holds for equal dicts, except that numbers that compare equal in Python but print differently
(1 and 1.0) differ. A LEASE compare against 0 also requires the key to exist (etcd alone would
say an absent key "has lease 0"), matching `Compare.holds`.

Failure semantics. Every request carries the ``hasleader`` metadata, so a member that has lost
its leader answers "no leader" at once instead of waiting. Endpoints are tried in order, starting
with the last one that answered, and the call moves on to the next endpoint only when the
request is known not to have been applied (no connection could be made, the TLS handshake
failed, or etcd refused it before proposing it: no leader, too many requests) — or, for calls
that are harmless to repeat (reads, grant, keepalive, time_to_live, revoke), after any failure.
A transaction whose fate is unknown (a read timeout, a connection lost once it stood, "request
timed out", "leader changed") raises `StoreUnavailable` at once and is never re-sent: re-sending
a compare-and-set that was in fact applied would report it as lost. When no endpoint answers,
every failure is named in the `StoreUnavailable`. A transaction whose compares failed returns
``TxnResult(False, revision)``; one that attaches a key to a lease that no longer exists applies
nothing and returns ``TxnResult(False, revision)``, as in the simulator. Invalid requests
(a key twice in one branch, a TTL etcd refuses) raise ``ValueError``. A stored value that is not
a JSON object raises ``ValueError`` naming the key. Each request waits at most ``timeout``
seconds, so one call waits at most ``timeout`` × the number of endpoints.

Authentication: with ``username`` and ``password`` the store asks ``/v3/auth/authenticate`` for a
token, sends it in the ``Authorization`` header and asks again when etcd says it expired. The
user needs read access to the key ``"\\0"`` (``revision()`` reads there) and read-write access to
ringfence's keys. TLS: ``https`` endpoints, verified against ``ca_file`` (else certifi's CA
bundle, the one ``requests`` used), with a client certificate when ``cert_file`` and ``key_file``
are given. The environment is ignored: no variable replaces ``ca_file`` (``SSL_CERT_FILE``,
``REQUESTS_CA_BUNDLE``), and no proxy variable sends coordination traffic through a proxy.

Why hand-written: etcd clients' high-level helpers (etcd3gw's) do not build multi-compare
transactions, encode keys as Latin-1 rather than UTF-8, drop the response headers that carry
revisions, and do not fail over between endpoints. Why `store.etcd_http` (one persistent
`http.client` connection per member) rather than ``requests``: a call cost about 1.3 ms of CPU
through ``requests`` and 0.3 ms this way, and an idle agent makes a few a second (issue 17); it
also tells apart, by construction, a request that can not have been sent (`NotSent`: no
connection or TLS session) from one that may have been (`Lost`), which the failover above
needs. Calls are serialised by a lock (a connection carries one request at a time), so the
runtime may call from any thread.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from ringfence.store.base import (
    Compare,
    Delete,
    GuardFailed,
    KeyValue,
    Op,
    RangeResult,
    StoreUnavailable,
    TxnResult,
    check_branch,
)
from ringfence.store.etcd_http import (
    Answer,
    GatewayConnection,
    GatewayStream,
    Lost,
    NotSent,
    tls_context,
)
from ringfence.store.sqlite import canonical_json, decode_value, prefix_end

__all__ = ["DEFAULT_PORT", "EtcdStore", "parse_endpoint"]

DEFAULT_PORT = 2379

_T = TypeVar("_T")

_API = "/v3/"  # the gateway's paths (etcd >= 3.4)

# gRPC status codes that etcd's gateway reports in its error bodies.
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_PERMISSION_DENIED = 7
_OUT_OF_RANGE = 11
_UNAUTHENTICATED = 16
_UNAVAILABLE_CODES = frozenset({1, 2, 4, 8, 10, 13, 14})  # canceled, unknown, deadline, ...

# etcd errors returned before a request was proposed to Raft: nothing was applied.
_NOT_APPLIED = (
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: too many requests",
)
_LEASE_NOT_FOUND = "requested lease not found"
_BAD_TOKEN = "invalid auth token"
_AUTH_ERRORS = (
    _BAD_TOKEN,
    "user name is empty",
    "user name not found",
    "permission denied",
    "authentication failed",
    "authentication is not enabled",
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd client URL: scheme (http or https), host and port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_endpoint(text: str, *, tls: bool = False) -> Endpoint:
    """Parse ``host``, ``host:port`` or ``http(s)://host:port``; the scheme defaults to https
    when `tls` files are configured. ``ValueError`` says what is wrong."""
    raw = text.strip()
    if not raw:
        raise ValueError("an endpoint must not be empty")
    parts = urlsplit(raw if "://" in raw else f"//{raw}")
    scheme = parts.scheme or ("https" if tls else "http")
    if scheme not in ("http", "https"):
        raise ValueError(f"endpoint {text!r}: the scheme must be http or https, not {scheme!r}")
    if tls and scheme == "http":
        raise ValueError(f"endpoint {text!r} uses http, but TLS files are configured")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"endpoint {text!r}: expected host:port or a URL without a path")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"endpoint {text!r}: the port must be a number 1-65535") from None
    if not parts.hostname:
        raise ValueError(f"endpoint {text!r}: no host name")
    return Endpoint(scheme, parts.hostname, port)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _key(key: str) -> str:
    return _b64(key.encode())


def _int(value: object) -> int:
    """etcd's JSON carries int64 as strings and omits zero values."""
    return int(str(value)) if value is not None else 0


class _Failure(Exception):
    """One endpoint's failure. `applied`: False if the request certainly was not applied;
    `code`/`etcd_message`: etcd's gRPC status when etcd itself answered."""

    def __init__(
        self, message: str, *, applied: bool | None, code: int | None = None,
        etcd_message: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.applied = applied
        self.code = code
        self.etcd_message = etcd_message

    @property
    def refused(self) -> bool:
        """etcd answered and rejected the request itself (not found, invalid, denied, ...):
        nothing was applied, and every member would answer the same."""
        return self.code is not None and self.code not in _UNAVAILABLE_CODES


def _http_failure(answer: Answer, endpoint: Endpoint) -> _Failure:
    """Classify an HTTP error answer: etcd's status in its body, or (a proxy, a broken member)
    an answer that says nothing of what happened to the request."""
    try:
        status = json.loads(answer.body)
    except ValueError:
        status = None
    if isinstance(status, dict):
        return _etcd_failure(status, endpoint)
    text = answer.body.decode(errors="replace") or f"{answer.status} {answer.reason}"
    return _Failure(f"{endpoint}: HTTP error without an etcd status: {text[:200]}", applied=None)


def _etcd_failure(status: dict[str, Any], endpoint: Endpoint) -> _Failure:
    """Classify an error body of the gateway: ``{"code": 14, "message": "..."}`` (unary) or
    ``{"grpc_code": 14, "message": "..."}`` (streams)."""
    code = status.get("code", status.get("grpc_code"))
    message = str(status.get("message") or status.get("error") or "unknown error")
    applied: bool | None = None
    if any(message.startswith(text) for text in _NOT_APPLIED):
        applied = False
    elif code is not None and _int(code) not in _UNAVAILABLE_CODES:
        applied = False  # a refusal: see _Failure.refused
    return _Failure(
        f"{endpoint}: {message}", applied=applied,
        code=None if code is None else _int(code), etcd_message=message,
    )


class EtcdStore:
    """The `Store` protocol on an etcd v3 cluster (see the module docstring for semantics).

    `endpoints`: client URLs of the members (``https://etcd1:2379``; ``host:port`` takes http,
    or https when TLS files are given). `ca_file`, `cert_file`, `key_file`: TLS. `username`,
    `password`: etcd authentication. `timeout`: seconds per request to one endpoint.
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        if (cert_file is None) != (key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if (username is None) != (password is None):
            raise ValueError("etcd authentication needs both username and password")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        tls = ca_file is not None or cert_file is not None
        self._settings: dict[str, Any] = {
            "endpoints": list(endpoints), "ca_file": ca_file, "cert_file": cert_file,
            "key_file": key_file, "username": username, "password": password,
            "timeout": timeout}
        self.endpoints = [parse_endpoint(text, tls=tls) for text in endpoints]
        self.timeout = timeout
        self._username = username
        self._password = password
        context = (tls_context(ca_file, cert_file, key_file)
                   if any(e.scheme == "https" for e in self.endpoints) else None)
        self._connections = [
            GatewayConnection(endpoint.host, endpoint.port, timeout=timeout,
                              context=context if endpoint.scheme == "https" else None)
            for endpoint in self.endpoints
        ]
        self._current = 0
        self._lock = threading.RLock()

    def clone(self) -> EtcdStore:
        """A store on the same endpoints, TLS and credentials, with connections of its own
        (for a thread that must not share this one's lock, such as the watch stream)."""
        return EtcdStore(**self._settings)

    def open_stream(self, index: int, path: str, payload: dict[str, Any], *,
                    idle: float) -> GatewayStream:
        """A streaming request this class does not read itself (`store.etcd_watch`): `payload`
        to ``/v3/<path>`` on endpoint `index`, on a connection of its own, authenticated when
        credentials are set; its answer may be silent `idle` seconds between lines. Raises
        `StoreUnavailable` when authentication fails, `NotSent` when no connection could be
        made, OSError or HTTPException for any later failure (or an HTTP error)."""
        with self._lock:
            connection = self._connections[index]
            if self._username is not None and "Authorization" not in connection.headers:
                try:
                    self._authenticate(index)
                except _Failure as failure:
                    raise StoreUnavailable(failure.message) from failure
        return connection.stream(_API + path, json.dumps(payload).encode(), idle=idle)

    def close(self) -> None:
        """Close the connections (they reopen on the next call)."""
        with self._lock:
            for connection in self._connections:
                connection.close()

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def _post(self, index: int, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoints[index]
        try:
            answer = self._connections[index].post(_API + path, json.dumps(payload).encode())
        except NotSent as exc:
            raise _Failure(f"{endpoint}: {exc}", applied=False) from exc
        except Lost as exc:
            raise _Failure(f"{endpoint}: {exc}", applied=None) from exc
        if answer.status != 200:
            raise _http_failure(answer, endpoint)
        try:
            body = json.loads(answer.body)
        except ValueError as exc:  # the answer was not JSON
            raise _Failure(f"{endpoint}: unreadable answer ({exc})", applied=None) from exc
        if not isinstance(body, dict):
            raise _Failure(f"{endpoint}: unexpected answer {body!r:.200}", applied=None)
        error = body.get("error")
        if isinstance(error, dict):  # a streaming call failed after HTTP 200
            raise _etcd_failure(error, endpoint)
        return body

    def _authenticate(self, index: int) -> None:
        headers = self._connections[index].headers
        headers.pop("Authorization", None)
        try:
            body = self._post(
                index, "auth/authenticate", {"name": self._username, "password": self._password}
            )
        except _Failure as failure:
            # Whatever happened to the login, the request itself was not sent.
            if not failure.refused:
                raise _Failure(failure.message, applied=False, code=failure.code,
                               etcd_message=failure.etcd_message) from failure
            raise _Failure(
                f"{self.endpoints[index]}: authentication as {self._username!r} failed: "
                f"{failure.etcd_message}",
                applied=False, code=_PERMISSION_DENIED, etcd_message=failure.etcd_message,
            ) from failure
        token = body.get("token")
        if not token:
            raise _Failure(f"{self.endpoints[index]}: etcd returned no auth token", applied=False)
        headers["Authorization"] = str(token)

    def _call_one(self, index: int, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._username is None:
            return self._post(index, path, payload)
        if "Authorization" not in self._connections[index].headers:
            self._authenticate(index)
        try:
            return self._post(index, path, payload)
        except _Failure as failure:
            if _BAD_TOKEN not in failure.etcd_message:
                raise
        self._authenticate(index)  # the token expired: once more with a new one
        return self._post(index, path, payload)

    def _call(
        self,
        path: str,
        payload: dict[str, Any],
        *,
        resend: bool,
        rejected: Callable[[_Failure], _T] | None = None,
    ) -> dict[str, Any] | _T:
        """POST to the endpoints in order from the last good one (see the module docstring).

        `resend`: the request is harmless to repeat. `rejected`: handles etcd's definitive
        refusals (the request was not applied); without it they raise `StoreUnavailable`."""
        with self._lock:
            failures: list[str] = []
            count = len(self._connections)
            for step in range(count):
                index = (self._current + step) % count
                try:
                    body = self._call_one(index, path, payload)
                except _Failure as failure:
                    if failure.refused:
                        self._current = index  # etcd answered: this member works
                        if rejected is not None:
                            return rejected(failure)
                        self._refused(failure)
                    failures.append(failure.message)
                    if failure.applied is not False and not resend:
                        raise StoreUnavailable(
                            f"etcd: {failure.message}; the request may have been applied"
                        ) from failure
                    continue
                self._current = index
                return body
            raise StoreUnavailable("etcd: no endpoint answered: " + "; ".join(failures))

    @staticmethod
    def _refused(failure: _Failure) -> NoReturn:
        if failure.code in (_PERMISSION_DENIED, _UNAUTHENTICATED) or any(
            text in failure.etcd_message for text in _AUTH_ERRORS
        ):
            raise StoreUnavailable(f"etcd: permission denied: {failure.message}")
        if failure.code in (_INVALID_ARGUMENT, _OUT_OF_RANGE):
            raise ValueError(f"etcd refused the request: {failure.message}")
        raise StoreUnavailable(f"etcd: {failure.message}")

    @staticmethod
    def _revision(body: dict[str, Any]) -> int:
        header = body.get("header")
        if not isinstance(header, dict) or "revision" not in header:
            raise StoreUnavailable(f"etcd: answer without a revision: {body!r:.200}")
        return _int(header["revision"])

    @staticmethod
    def _kv(item: dict[str, Any]) -> KeyValue:
        raw = base64.b64decode(item.get("key", ""))
        try:
            key = raw.decode()
        except UnicodeDecodeError:
            raise ValueError(f"store key {raw!r} is not UTF-8") from None
        value = decode_value(key, base64.b64decode(item.get("value", "")))
        return KeyValue(
            key,
            value,
            _int(item.get("create_revision")),
            _int(item.get("mod_revision")),
            _int(item.get("lease")),
        )

    def _range(self, payload: dict[str, Any]) -> dict[str, Any]:
        body = self._call("kv/range", payload, resend=True)
        assert isinstance(body, dict)
        return body

    # ------------------------------------------------------------------ the Store protocol
    def revision(self) -> int:
        return self._revision(self._range({"key": _b64(b"\0"), "count_only": True}))

    def get(self, key: str) -> KeyValue | None:
        body = self._range({"key": _key(key)})
        kvs = body.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str, guard: Compare | None = None) -> RangeResult:
        start = prefix.encode()
        end = prefix_end(start)
        payload = {
            "key": _b64(start or b"\0"),
            "range_end": _b64(end if end is not None else b"\0"),  # "\0": no end
        }
        if guard is None:
            body = self._range(payload)
            items = tuple(self._kv(item) for item in body.get("kvs") or [])
            return RangeResult(items, self._revision(body))
        # A read-only transaction: the range only if the guard holds, at one revision.
        answer = self._call("kv/txn", {"compare": self._compare(guard),
                                       "success": [{"request_range": payload}],
                                       "failure": []}, resend=True)
        assert isinstance(answer, dict)
        if not answer.get("succeeded", False):
            raise GuardFailed(f"guard on {guard.key} does not hold")
        responses = answer.get("responses") or [{}]
        found = responses[0].get("response_range") or {}
        items = tuple(self._kv(item) for item in found.get("kvs") or [])
        return RangeResult(items, self._revision(answer))

    @staticmethod
    def _compare(condition: Compare) -> list[dict[str, Any]]:
        key = _key(condition.key)
        if condition.target == "mod":
            return [{"key": key, "result": "EQUAL", "target": "MOD",
                     "mod_revision": str(int(condition.value))}]
        if condition.target == "create":
            return [{"key": key, "result": "EQUAL", "target": "CREATE",
                     "create_revision": str(int(condition.value))}]
        if condition.target == "value":
            return [{"key": key, "result": "EQUAL", "target": "VALUE",
                     "value": _b64(canonical_json(condition.value).encode())}]
        if condition.target == "lease":
            compares = [{"key": key, "result": "EQUAL", "target": "LEASE",
                         "lease": str(int(condition.value))}]
            if int(condition.value) == 0:  # etcd: an absent key "has lease 0"; we say absent
                compares.append({"key": key, "result": "NOT_EQUAL", "target": "CREATE",
                                 "create_revision": "0"})
            return compares
        raise ValueError(f"unknown compare target {condition.target!r}")

    @staticmethod
    def _op(op: Op) -> dict[str, Any]:
        if isinstance(op, Delete):
            return {"request_delete_range": {"key": _key(op.key)}}
        value = _b64(canonical_json(op.value).encode())
        put: dict[str, Any] = {"key": _key(op.key), "value": value}
        if op.lease:
            put["lease"] = str(op.lease)
        return {"request_put": put}

    def txn(
        self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None
    ) -> TxnResult:
        failure = failure or []
        check_branch(success, "success")
        check_branch(failure, "failure")
        payload = {
            "compare": [item for condition in compare for item in self._compare(condition)],
            "success": [self._op(op) for op in success],
            "failure": [self._op(op) for op in failure],
        }

        def rejected(refusal: _Failure) -> TxnResult | None:
            if refusal.code == _NOT_FOUND and _LEASE_NOT_FOUND in refusal.etcd_message:
                return None  # a Put names a gone lease: nothing applied
            self._refused(refusal)

        body = self._call("kv/txn", payload, resend=False, rejected=rejected)
        if body is None:
            return TxnResult(False, self.revision())
        assert isinstance(body, dict)
        return TxnResult(bool(body.get("succeeded", False)), self._revision(body))

    def grant(self, ttl: float) -> int:
        if not ttl > 0:
            raise ValueError(f"a lease needs a positive TTL, got {ttl!r}")
        body = self._call("lease/grant", {"TTL": str(math.ceil(ttl)), "ID": "0"}, resend=True)
        assert isinstance(body, dict)
        if body.get("error"):
            raise StoreUnavailable(f"etcd: lease grant failed: {body['error']}")
        lease = _int(body.get("ID"))
        if not lease:
            raise StoreUnavailable(f"etcd: lease grant returned no ID: {body!r:.200}")
        return lease

    def keepalive(self, lease: int) -> bool:
        body = self._call("lease/keepalive", {"ID": str(lease)}, resend=True)
        assert isinstance(body, dict)
        result = body.get("result")
        if not isinstance(result, dict):
            raise StoreUnavailable(f"etcd: unexpected keepalive answer {body!r:.200}")
        return _int(result.get("TTL")) > 0

    def time_to_live(self, lease: int) -> float | None:
        def rejected(refusal: _Failure) -> bool:
            if refusal.code == _NOT_FOUND:
                return False
            self._refused(refusal)

        body = self._call("lease/timetolive", {"ID": str(lease)}, resend=True, rejected=rejected)
        if body is False:
            return None
        assert isinstance(body, dict)
        ttl = _int(body.get("TTL"))
        return None if ttl < 0 else float(ttl)

    def revoke(self, lease: int) -> None:
        def rejected(refusal: _Failure) -> None:
            if refusal.code == _NOT_FOUND:
                return None  # already gone: not an error
            self._refused(refusal)

        self._call("lease/revoke", {"ID": str(lease)}, resend=True, rejected=rejected)
