"""Heartbeats over real UDP sockets on loopback: delivery, forgery, replay, freshness across
restarts, binding to the receiver and the cluster, and ports that can not be bound."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

from ringfence.agent.transport import (
    LinkEndpoints,
    TransportError,
    UdpTransport,
    cluster_key,
    encode_for,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pair(key: bytes = b"k" * 32) -> tuple[UdpTransport, UdpTransport, list[LinkEndpoints]]:
    links = [LinkEndpoints("ring0", [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]),
             LinkEndpoints("ring1", [("127.0.0.1", free_port()), ("127.0.0.1", free_port())])]
    return UdpTransport(key, 0, links, 2), UdpTransport(key, 1, links, 2), links


def receive_soon(transport: UdpTransport) -> np.ndarray:
    deadline = time.monotonic() + 2.0
    heard = np.full((2, 2), -np.inf)
    while time.monotonic() < deadline and not np.isfinite(heard[0]).all():
        batch = transport.receive()
        heard = np.maximum(heard, batch.heard_at)
        time.sleep(0.01)
    return heard


def test_heartbeats_arrive_on_every_link_with_the_senders_view() -> None:
    a, b, _ = pair()
    try:
        deadline = time.monotonic() + 2.0
        got = None
        while time.monotonic() < deadline:
            b.send(np.array([True, True]), 0)  # a learns b's life, then echoes it
            a.send(np.array([True, True]), 1, 77)
            time.sleep(0.01)
            a.receive()
            batch = b.receive()
            if np.isfinite(batch.heard_at[0]).all():
                got = batch
                break
        assert got is not None
        assert got.view_valid[0] and got.peer_views[0].tolist() == [True, True]
        assert got.peer_flags[0] == 1
        assert got.peer_stores[0] == 77
    finally:
        a.close()
        b.close()


def test_forged_and_replayed_heartbeats_are_dropped_and_counted() -> None:
    a, b, links = pair()
    try:
        target = links[0].addresses[1]
        key = cluster_key(b"k" * 32, "")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            (forged,) = encode_for(cluster_key(b"x" * 32, ""), link=0, sender=0, epoch=1,
                                   seq=1, flags=0, store=0, heard=[True, True],
                                   receivers=[(1, b.epoch)])
            attacker.sendto(forged, target)
            (genuine,) = encode_for(key, link=0, sender=0, epoch=5, seq=7, flags=0, store=0,
                                    heard=[True, False], receivers=[(1, b.epoch)])
            attacker.sendto(genuine, target)
            attacker.sendto(genuine, target)  # the same datagram again: a replay
            (older,) = encode_for(key, link=0, sender=0, epoch=4, seq=99, flags=0, store=0,
                                  heard=[True, False], receivers=[(1, b.epoch)])
            attacker.sendto(older, target)  # an earlier life of the sender
        deadline = time.monotonic() + 2.0
        believed = 0
        while time.monotonic() < deadline and b.drops.forged + b.drops.replayed < 3:
            batch = b.receive()
            believed += int(np.isfinite(batch.heard_at[0, 0]))
            time.sleep(0.01)
        assert believed == 1
        assert b.drops.forged == 1
        assert b.drops.replayed == 2
    finally:
        a.close()
        b.close()


class _Recorder:
    """Stands in for one of a transport's sockets: forwards and keeps what was sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.drop_to: set[tuple[str, int]] = set()  # lost on the wire (but recorded)

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        self.sent.append((data, address))
        if address in self.drop_to:
            return len(data)
        return self.sock.sendto(data, address)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def recvmsg(self, size: int, ancillary: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]],
                                                              int, object]:
        return self.sock.recvmsg(size, ancillary)

    def close(self) -> None:
        self.sock.close()


def _record(transport: UdpTransport) -> list[_Recorder]:
    recorders = [_Recorder(s) for s in transport.sockets if s is not None]
    transport.sockets = recorders  # type: ignore[assignment]
    return recorders


def _talk(*transports: UdpTransport, rounds: int = 10) -> list[bool]:
    """Exchange heartbeats; whether each transport believed any from host 0 meanwhile."""
    heard = [False] * len(transports)
    for _ in range(rounds):
        for t in transports:
            t.send(np.ones(t.hosts, dtype=np.bool_), 0)
        time.sleep(0.02)
        for k, t in enumerate(transports):
            heard[k] = heard[k] or bool(np.isfinite(t.receive().heard_at[0]).any())
    return heard


def _believed(transport: UdpTransport, sender: int, within: float = 0.5) -> int:
    deadline = time.monotonic() + within
    believed = 0
    while time.monotonic() < deadline:
        believed += int(np.isfinite(transport.receive().heard_at[sender]).any())
        time.sleep(0.01)
    return believed


def _replay(records: list[_Recorder], to: tuple[str, int] | None = None) -> int:
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        for recorder in records:
            for data, address in recorder.sent:
                attacker.sendto(data, to or address)
                sent += 1
    return sent


def test_a_restarted_receiver_believes_no_heartbeat_of_its_earlier_life() -> None:
    # Issue 9, case 7: a freshly started receiver believed 10 of 10 heartbeats replayed from
    # an hour earlier.
    key = b"k" * 32
    a, b, links = pair(key)
    records = _record(a)
    try:
        heard = _talk(a, b)
        assert heard[1], "b never heard a in the first place"
        b.close()
        b2 = UdpTransport(key, 1, links, 2)
        try:
            assert _replay(records) >= 10
            assert _believed(b2, 0) == 0, "a replay of an earlier life was believed"
            assert b2.drops.stale >= 10
            assert _talk(a, b2)[1], "the genuine sender is heard once it hears the new life"
        finally:
            b2.close()
    finally:
        a.close()


def test_a_restarted_sender_is_not_impersonated_by_its_earlier_life() -> None:
    key = b"k" * 32
    a, b, links = pair(key)
    records = _record(a)
    try:
        _talk(a, b)
        a.close()
        a2 = UdpTransport(key, 0, links, 2)
        try:
            _talk(a2, b)
            b.receive()
            _replay(records)
            assert _believed(b, 0) == 0
        finally:
            a2.close()
    finally:
        b.close()


def test_a_heartbeat_is_bound_to_its_receiver() -> None:
    # A heartbeat that host0 sent to host1 must not be believed when relayed to host2.
    key = b"k" * 32
    links = [LinkEndpoints("ring0", [("127.0.0.1", free_port()) for _ in range(3)])]
    hosts = [UdpTransport(key, i, links, 3) for i in range(3)]
    records = _record(hosts[0])
    for recorder in records:
        recorder.drop_to = {links[0].addresses[2]}  # host2 never got host0's own datagrams
    try:
        _talk(*hosts)
        for recorder in records:
            recorder.sent = [(d, a) for d, a in recorder.sent if a == links[0].addresses[1]]
        hosts[0].close()
        _talk(hosts[1], hosts[2], rounds=2)
        hosts[2].receive()
        _replay(records, to=links[0].addresses[2])
        assert _believed(hosts[2], 0) == 0, "a relayed heartbeat was believed"
    finally:
        for t in hosts:
            t.close()


def test_a_heartbeat_of_another_cluster_with_the_same_key_is_not_believed() -> None:
    key = b"k" * 32
    links = [LinkEndpoints("ring0", [("127.0.0.1", free_port()), ("127.0.0.1", free_port())])]
    a = UdpTransport(key, 0, links, 2, cluster="atl")
    b = UdpTransport(key, 1, links, 2, cluster="sfo")
    try:
        _talk(a, b)
        assert _believed(b, 0) == 0
    finally:
        a.close()
        b.close()


def test_a_heartbeat_port_taken_by_another_program_is_refused_at_start() -> None:
    # Issue 17, case 2: with corosync on the port the agent ran deaf, without a word.
    links = [LinkEndpoints("ring0", [("127.0.0.1", free_port()), ("127.0.0.1", free_port())])]
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(links[0].addresses[0])
    try:
        with pytest.raises(TransportError, match=r"ring0 .* already in use"):
            UdpTransport(b"k" * 32, 0, links, 2)
    finally:
        squatter.close()


def test_an_address_not_on_this_host_leaves_that_link_down_and_the_others_work() -> None:
    links = [LinkEndpoints("ring0", [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]),
             LinkEndpoints("ring1", [("192.0.2.1", free_port()), ("127.0.0.1", free_port())])]
    a = UdpTransport(b"k" * 32, 0, links, 2)
    try:
        assert "ring1" in a.down and "ring0" not in a.down
        a.send(np.array([True, True]), 0)
        assert a.drops.unbound == 1
    finally:
        a.close()
    with pytest.raises(TransportError, match="no heartbeat network can be bound"):
        UdpTransport(b"k" * 32, 0, [links[1]], 2)


def test_a_lease_report_reaches_its_receiver_with_the_heartbeat_number() -> None:
    from ringfence.core.ports import LeaseReport

    a, b, _ = pair()
    try:
        deadline = time.monotonic() + 2.0
        got = None
        while time.monotonic() < deadline and got is None:
            b_seq = b.send(np.array([True, True]), 4)
            a.receive()
            a.send(np.array([True, True]), 1, 0, {1: LeaseReport(91, b_seq, 4.2567)})
            time.sleep(0.01)
            batch = b.receive()
            if batch.view_valid[0]:
                got = batch
        assert got is not None
        # Rounded down to the millisecond: a lower bound stays a lower bound.
        assert got.reports == {0: LeaseReport(91, b_seq, 4.256)}
        assert got.peer_seqs[0] >= a.epoch // 1000
    finally:
        a.close()
        b.close()


def test_heartbeat_numbers_grow_across_a_senders_lives(tmp_path: Path) -> None:
    links = [LinkEndpoints("ring0", [("127.0.0.1", free_port()), ("127.0.0.1", free_port())])]
    epoch_file = tmp_path / "epoch"
    first = UdpTransport(b"k" * 32, 0, links, 2, epoch_file=epoch_file)
    last_of_first = max(first.send(np.array([True, False]), 0) for _ in range(50))
    first.close()
    second = UdpTransport(b"k" * 32, 0, links, 2, epoch_file=epoch_file)
    try:
        assert second.send(np.array([True, False]), 0) > last_of_first
    finally:
        second.close()


def test_a_version_2_heartbeat_is_still_read() -> None:
    import hashlib
    import hmac

    from ringfence.agent.transport import HEADER, MAGIC, TAIL_V2, decode

    key = cluster_key(b"k" * 32, "")
    bits = np.packbits(np.array([True, True])).tobytes()
    body = HEADER.pack(MAGIC, 2, 0, 1, 5, 9, 1, 0, 2) + bits + TAIL_V2.pack(0, 3)
    beat = decode(key, body + hmac.new(key, body, hashlib.sha256).digest(), 2)
    assert (beat.sender, beat.seq, beat.echo, beat.report) == (1, 9, 3, None)


def test_a_heartbeat_counts_from_when_it_arrived_not_when_it_was_read() -> None:
    # Issue 17: the heartbeat cycle reads its sockets once a slot; a heartbeat stamped when
    # read looked up to one interval younger than it was, and a lost host was noticed late.
    links = [LinkEndpoints("ring0", [("127.0.0.1", free_port()), ("127.0.0.1", free_port())])]
    key = b"k" * 32
    a = UdpTransport(key, 0, links, 2)
    b = UdpTransport(key, 1, links, 2, arrival_cap=0.2)
    try:
        for _ in range(3):  # learn each other's epochs (freshness)
            b.send(np.ones(2, dtype=np.bool_), 0)
            a.send(np.ones(2, dtype=np.bool_), 0)
            time.sleep(0.02)
            a.receive()
            b.receive()
        a.send(np.ones(2, dtype=np.bool_), 0)
        time.sleep(0.1)  # it waits in the socket, as it would until the next slot
        before = time.monotonic()
        heard = b.receive().heard_at[0, 0]
        assert np.isfinite(heard)
        assert before - 0.2 <= heard <= before - 0.05, before - heard
        b.arrival_cap = 0.03  # a stamp is never taken for older than the cap
        a.send(np.ones(2, dtype=np.bool_), 0)
        time.sleep(0.1)
        before = time.monotonic()
        heard = b.receive().heard_at[0, 0]
        assert before - 0.03 - 0.01 <= heard <= before
    finally:
        for t in (a, b):
            t.close()


def test_a_batch_holds_each_senders_last_view_and_newest_number() -> None:
    # receive() gathers in lists and builds the arrays once (issue 17): several heartbeats
    # from one sender in one read still give its last view, flags and store, its newest
    # number, and a stamp on every link it was heard on; a silent sender stays invalid.
    a, b, _ = pair()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # each learns the other's life
            a.send(np.array([True, True]), 0)
            b.send(np.array([True, True]), 0)
            time.sleep(0.01)
            if np.isfinite(b.receive().heard_at[0]).all():
                break
            a.receive()
        first = a.send(np.array([True, False]), 1, 5)
        last = a.send(np.array([False, True]), 2, 6)
        time.sleep(0.05)
        batch = b.receive()
        assert last == first + 1 and batch.peer_seqs[0] == last
        assert batch.peer_views[0].tolist() == [False, True]
        assert (batch.peer_flags[0], batch.peer_stores[0]) == (2, 6)
        assert np.isfinite(batch.heard_at[0]).all() and batch.heard_at.shape == (2, 2)
        assert not batch.view_valid[1] and np.isneginf(batch.heard_at[1]).all()
    finally:
        a.close()
        b.close()


def test_decoded_views_are_shared_read_only() -> None:
    from ringfence.agent.transport import decode

    key = cluster_key(b"k" * 32, "")
    one, two = (encode_for(key, link=0, sender=1, epoch=5, seq=seq, flags=0, store=0,
                           heard=[True, False, True], receivers=[(0, 3)])[0] for seq in (1, 2))
    first, second = decode(key, one, 3), decode(key, two, 3)
    assert first.heard.tolist() == [True, False, True]
    assert first.heard is second.heard  # one bitmap, unpacked once
    with pytest.raises(ValueError):
        first.heard[0] = False  # shared: nobody may change it
