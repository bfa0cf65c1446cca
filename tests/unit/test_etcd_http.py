"""`EtcdStore`'s HTTP transport (`store.etcd_http`) against fake members on loopback: what a
failure at each point of a request means (never sent, or maybe applied), and what the store
does with it (the next endpoint, or `StoreUnavailable` at once for a transaction).

No etcd here: each fake member is a socket that answers, or fails, exactly as a test says.
The store contract on a real etcd is `tests/integration/test_stores.py`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from ringfence.store.base import Compare, Put, StoreUnavailable
from ringfence.store.etcd import EtcdStore
from ringfence.store.etcd_http import GatewayConnection, Lost, NotSent

TXN_OK = {"header": {"revision": "7"}, "succeeded": True}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


def _read_request(reader: socket.SocketIO) -> Request | None:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = reader.read(1)
        if not byte:
            return None
        head += byte
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = reader.read(length - len(body))
        if not chunk:
            return None
        body += chunk
    return Request(lines[0].split()[1], headers, body)


def _answer(conn: socket.socket, status: int, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)


# What a fake member does with the n-th request on a connection: "answer" (with `reply`),
# "drop" (close without a word, after reading it), or "close-after" (answer, then close).
Behaviour = Callable[[int], str]


@dataclass
class FakeMember:
    behaviour: Behaviour = lambda n: "answer"
    reply: dict[str, object] = field(default_factory=lambda: dict(TXN_OK))
    status: int = 200
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = socket.SocketIO(conn, "rb")
        with conn:
            n = 0
            while (request := _read_request(reader)) is not None:
                self.requests.append(request)
                action = self.behaviour(n)
                n += 1
                if action == "drop":
                    return
                if request.path == "/version":  # the TLS 1.3 confirmation (not used here)
                    _answer(conn, 200, {"etcdserver": "3.5.0"})
                    continue
                _answer(conn, self.status, self.reply)
                if action == "close-after":
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def members() -> Iterator[Callable[..., FakeMember]]:
    made: list[FakeMember] = []

    def make(**options: object) -> FakeMember:
        member = FakeMember(**options)  # type: ignore[arg-type]
        made.append(member)
        return member

    yield make
    for member in made:
        member.close()


def _refused_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed: connections are refused


def _put() -> tuple[list[Compare], list[Put]]:
    return [Compare.absent("k")], [Put("k", {"v": 1})]


def test_a_connection_lost_mid_request_is_maybe_applied_and_never_resent(
        members: Callable[..., FakeMember]) -> None:
    cut = members(behaviour=lambda n: "drop")
    spare = members()
    with EtcdStore([cut.endpoint, spare.endpoint], timeout=1.0) as store, \
            pytest.raises(StoreUnavailable, match="may have been applied"):
        store.txn(*_put())
    assert len(cut.requests) == 1  # it was sent, once
    assert spare.requests == []  # and never to another member


def test_a_read_lost_mid_request_moves_on_to_the_next_endpoint(
        members: Callable[..., FakeMember]) -> None:
    cut = members(behaviour=lambda n: "drop")
    spare = members(reply={"header": {"revision": "9"}})
    with EtcdStore([cut.endpoint, spare.endpoint], timeout=1.0) as store:
        assert store.revision() == 9  # a read is harmless to repeat
    assert len(spare.requests) == 1


def test_a_refused_connection_moves_a_transaction_to_the_next_endpoint(
        members: Callable[..., FakeMember]) -> None:
    spare = members()
    with EtcdStore([_refused_endpoint(), spare.endpoint], timeout=1.0) as store:
        assert store.txn(*_put()).succeeded
    assert len(spare.requests) == 1


def test_a_member_that_answers_no_leader_moves_a_transaction_on(
        members: Callable[..., FakeMember]) -> None:
    leaderless = members(status=503, reply={"code": 14, "message": "etcdserver: no leader"})
    spare = members()
    with EtcdStore([leaderless.endpoint, spare.endpoint], timeout=1.0) as store:
        assert store.txn(*_put()).succeeded
    assert len(leaderless.requests) == 1 and len(spare.requests) == 1


def test_an_http_error_without_an_etcd_status_is_maybe_applied(
        members: Callable[..., FakeMember]) -> None:
    broken = members(status=502, reply={"not": "etcd"})
    spare = members()
    with EtcdStore([broken.endpoint, spare.endpoint], timeout=1.0) as store, \
            pytest.raises(StoreUnavailable, match="may have been applied"):
        store.txn(*_put())
    assert spare.requests == []


def test_a_kept_connection_the_member_closed_is_replaced_before_sending(
        members: Callable[..., FakeMember]) -> None:
    member = members(behaviour=lambda n: "close-after")
    with EtcdStore([member.endpoint], timeout=1.0) as store:
        assert store.txn(*_put()).succeeded
        time.sleep(0.05)  # the member's close reaches us
        assert store.txn(*_put()).succeeded  # not "may have been applied"
    assert len(member.requests) == 2 and member.connections == 2


def test_one_connection_carries_every_call(members: Callable[..., FakeMember]) -> None:
    member = members()
    with EtcdStore([member.endpoint], timeout=1.0) as store:
        for _ in range(5):
            store.txn(*_put())
    assert member.connections == 1


def test_every_request_says_hasleader_and_uses_no_proxy(
        members: Callable[..., FakeMember], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", _refused_endpoint())
    monkeypatch.setenv("http_proxy", _refused_endpoint())
    member = members()
    with EtcdStore([member.endpoint], timeout=1.0) as store:
        store.txn(*_put())
    (request,) = member.requests
    assert request.path == "/v3/kv/txn"
    assert request.headers["grpc-metadata-hasleader"] == "true"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers


def test_the_auth_token_goes_with_every_request(members: Callable[..., FakeMember]) -> None:
    member = members(reply={"header": {"revision": "3"}, "token": "tok.1", "succeeded": True})
    with EtcdStore([member.endpoint], timeout=1.0, username="u", password="p") as store:
        store.txn(*_put())
    login, txn = member.requests
    assert login.path == "/v3/auth/authenticate"
    assert json.loads(login.body) == {"name": "u", "password": "p"}
    assert txn.headers["authorization"] == "tok.1"


def test_the_connection_says_not_sent_or_lost() -> None:
    refused = _refused_endpoint().rsplit(":", 1)[1]
    with pytest.raises(NotSent, match="cannot connect"):
        GatewayConnection("127.0.0.1", int(refused), context=None, timeout=1.0).post("/", b"{}")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts, never answers
    try:
        with pytest.raises(Lost, match="no answer"):
            GatewayConnection("127.0.0.1", silent.getsockname()[1], context=None,
                              timeout=0.2).post("/", b"{}")
    finally:
        silent.close()


def test_interrupting_a_stream_from_another_thread_ends_its_reader() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        _read_request(socket.SocketIO(conn, "rb"))
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\n{}\n\r\n")
        time.sleep(5)  # then silence, connection open
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    connection = GatewayConnection("127.0.0.1", server.getsockname()[1], context=None,
                                   timeout=1.0)
    stream = connection.stream("/v3/watch", b"{}", idle=30.0)
    lines = stream.lines()
    assert next(lines) == b"{}\n"
    ended = threading.Event()

    def read_on() -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            list(lines)
        ended.set()

    threading.Thread(target=read_on, daemon=True).start()
    stream.interrupt()
    assert ended.wait(2.0)  # well before the 30 s idle time or the server's 5 s
    stream.close()
    server.close()
