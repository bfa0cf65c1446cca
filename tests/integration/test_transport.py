"""Heartbeats over real UDP sockets on loopback: delivery, forgery, replay."""

from __future__ import annotations

import socket
import time

import numpy as np

from ringfence.agent.transport import LinkEndpoints, UdpTransport, encode


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
        a.send(np.array([True, True]), 1)
        deadline = time.monotonic() + 2.0
        got = None
        while time.monotonic() < deadline:
            batch = b.receive()
            if np.isfinite(batch.heard_at[0]).all():
                got = batch
                break
            time.sleep(0.01)
        assert got is not None
        assert got.view_valid[0] and got.peer_views[0].tolist() == [True, True]
        assert got.peer_flags[0] == 1
    finally:
        a.close()
        b.close()


def test_forged_and_replayed_heartbeats_are_dropped_and_counted() -> None:
    a, b, links = pair()
    try:
        target = links[0].addresses[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            forged = encode(b"x" * 32, link=0, sender=0, epoch=1, seq=1, flags=0,
                            heard=[True, True])
            attacker.sendto(forged, target)
            genuine = encode(b"k" * 32, link=0, sender=0, epoch=5, seq=7, flags=0,
                             heard=[True, False])
            attacker.sendto(genuine, target)
            attacker.sendto(genuine, target)  # the same datagram again: a replay
            older = encode(b"k" * 32, link=0, sender=0, epoch=4, seq=99, flags=0,
                           heard=[True, False])
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
