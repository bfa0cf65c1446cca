"""Heartbeats over UDP: one socket per heartbeat network, HMAC-SHA256 with the cluster key,
sequence numbers and a replay window.

Why hand-written: a heartbeat is one small datagram; corosync/knet would bring a membership
protocol of its own (we only want "who hears whom on which link"), and no maintained Python
library does authenticated heartbeats. `hmac`, `struct` and `socket` from the standard
library are all it takes.

Wire format (big-endian): magic "RF", version 1, link index (u8), sender index (u16),
epoch (u64: the sender's start time in ns, so that a restarted sender's counter restarts
above its last life), sequence (u64), flags (u8), host count (u16), the heard bitmap
(ceil(n/8) bytes), then HMAC-SHA256 over all of it, keyed with the cluster key.

A datagram is believed only if its HMAC is right, its cluster size matches, and it is newer
than what we have from that sender on that link (a newer epoch, or the same epoch with a
sequence not seen in the last 64). Everything else is dropped and counted, never believed.
Sending never raises: a link that can not send stays silent, and the peers notice.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ringfence.core.ports import BoolArray, HeartbeatBatch

MAGIC = b"RF"
VERSION = 1
HEADER = struct.Struct("!2sBBHQQBH")
DIGEST = 32
WINDOW = 64


@dataclass
class LinkEndpoints:
    """Where each host listens on one heartbeat network: (address, port) by host index."""

    name: str
    addresses: list[tuple[str, int]]


@dataclass
class DropCounts:
    forged: int = 0
    replayed: int = 0
    malformed: int = 0
    send_errors: int = 0


@dataclass
class _Replay:
    epoch: int = -1
    highest: int = -1
    seen: int = 0  # bitmask of the WINDOW sequences below `highest`

    def accept(self, epoch: int, seq: int) -> bool:
        if epoch > self.epoch:
            self.epoch, self.highest, self.seen = epoch, seq, 1
            return True
        if epoch < self.epoch:
            return False
        if seq > self.highest:
            shift = seq - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = seq
            return True
        offset = self.highest - seq
        if offset >= WINDOW or self.seen & (1 << offset):
            return False
        self.seen |= 1 << offset
        return True


def encode(key: bytes, *, link: int, sender: int, epoch: int, seq: int, flags: int,
           heard: Sequence[bool]) -> bytes:
    bits = np.packbits(np.asarray(heard, dtype=np.bool_)).tobytes()
    body = HEADER.pack(MAGIC, VERSION, link, sender, epoch, seq, flags, len(heard)) + bits
    return body + hmac.new(key, body, hashlib.sha256).digest()


def decode(key: bytes, data: bytes, hosts: int) -> tuple[int, int, int, int, int, BoolArray]:
    """(link, sender, epoch, seq, flags, heard) or ValueError (malformed) / PermissionError
    (bad HMAC)."""
    if len(data) < HEADER.size + DIGEST:
        raise ValueError("short datagram")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), digest):
        raise PermissionError("bad HMAC")
    magic, version, link, sender, epoch, seq, flags, count = HEADER.unpack_from(body)
    if magic != MAGIC or version != VERSION or count != hosts or sender >= hosts:
        raise ValueError("not one of our heartbeats")
    bits = np.frombuffer(body[HEADER.size:], dtype=np.uint8)
    heard: BoolArray = np.unpackbits(bits)[:count].astype(np.bool_)
    if heard.size != count:
        raise ValueError("truncated bitmap")
    return link, sender, epoch, seq, flags, heard


@dataclass
class UdpTransport:
    """The `Transport` of a real host. `links[j].addresses[i]` is where host `i` listens on
    heartbeat network `j`; this host binds its own address on every link."""

    key: bytes
    me: int
    links: list[LinkEndpoints]
    hosts: int
    drops: DropCounts = field(default_factory=DropCounts)

    def __post_init__(self) -> None:
        self.epoch = time.time_ns()  # not decision code: only orders this host's lives
        self.seq = 0
        self.sockets: list[socket.socket | None] = []
        self.replay = [[_Replay() for _ in self.links] for _ in range(self.hosts)]
        for link in self.links:
            self.sockets.append(self._bind(link.addresses[self.me]))

    @staticmethod
    def _bind(address: tuple[str, int]) -> socket.socket | None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.setblocking(False)
            return sock
        except OSError:
            return None  # a NIC that is down at start: that link stays silent

    def send(self, heard: BoolArray, flags: int) -> None:
        self.seq += 1
        for j, (link, sock) in enumerate(zip(self.links, self.sockets, strict=True)):
            if sock is None:
                sock = self.sockets[j] = self._bind(link.addresses[self.me])
                if sock is None:
                    continue
            datagram = encode(self.key, link=j, sender=self.me, epoch=self.epoch, seq=self.seq,
                              flags=flags, heard=heard.tolist())
            for i, address in enumerate(link.addresses):
                if i == self.me:
                    continue
                try:
                    sock.sendto(datagram, address)
                except OSError:
                    self.drops.send_errors += 1

    def receive(self) -> HeartbeatBatch:
        n = self.hosts
        heard_at = np.full((n, len(self.links)), -np.inf)
        views = np.zeros((n, n), dtype=np.bool_)
        valid = np.zeros(n, dtype=np.bool_)
        flags = np.zeros(n, dtype=np.int64)
        now = time.monotonic()
        for j, sock in enumerate(self.sockets):
            if sock is None:
                continue
            while True:
                try:
                    data = sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                try:
                    link, sender, epoch, seq, bits, heard = decode(self.key, data, n)
                except PermissionError:
                    self.drops.forged += 1
                    continue
                except (ValueError, struct.error):
                    self.drops.malformed += 1
                    continue
                if link != j or sender == self.me:
                    self.drops.malformed += 1
                    continue
                if not self.replay[sender][j].accept(epoch, seq):
                    self.drops.replayed += 1
                    continue
                heard_at[sender, j] = now
                views[sender] = heard
                valid[sender] = True
                flags[sender] = bits
        return HeartbeatBatch(heard_at, views, valid, flags)

    def close(self) -> None:
        for sock in self.sockets:
            if sock is not None:
                sock.close()
