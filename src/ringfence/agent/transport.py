"""Heartbeats over UDP: one socket per heartbeat network, authenticated, bound to their
receiver and cluster, and fresh: a heartbeat recorded earlier is never believed again.

Why hand-written: a heartbeat is one small datagram; corosync/knet would bring a membership
protocol of its own (we only want "who hears whom on which link"), and no maintained Python
library does authenticated heartbeats. `hmac`, `struct` and `socket` from the standard
library are all it takes.

Wire format, version 3 (big-endian): magic "RF", version, link index (u8), sender index (u16),
sender epoch (u64), sequence (u64), flags (u8), store fingerprint (u64: the store identity the
sender joined, 0 for none), host count (u16), the heard bitmap (ceil(n/8) bytes), receiver
index (u16), echo (u64: the receiver's epoch, as the sender last heard it; 0 before it has),
then the lease report for the receiver (`core.ports.LeaseReport`: lease id u64, 0 for none;
the receiver's heartbeat number it echoes, u64; remaining time to live in milliseconds, u32,
rounded down), then HMAC-SHA256 over all of it. Version 2 (the same without the report) is
still read, so that hosts can be upgraded one at a time. The HMAC key is derived from the
cluster key and the cluster's name, so a heartbeat of another cluster that shares the key file
is not one of ours.

A datagram is believed only if its HMAC is right, its cluster size matches, it names this
host as its receiver (a heartbeat relayed to another host is refused), it echoes this host's
*current* epoch (a heartbeat recorded in an earlier life of this host, however it comes back,
is refused: that is what makes a replay fail after a restart of the receiver), and it is newer
than what we have from that sender on that link (a newer epoch, or the same epoch with a
sequence not seen in the last 64: a restart of the sender). Everything else is dropped and
counted, never believed. The epoch is the start time in nanoseconds, kept on disk
(`epoch_file`) so that it grows across restarts even if the wall clock steps back.

Freshness costs one heartbeat interval at start: a host is heard only once its peer has
heard its own epoch (from any of its datagrams that are authentic and addressed to it).

Sending never raises: a link that can not send stays silent, and the peers notice. Binding is
checked at start: an address already in use (another program on the port, corosync's 5405 for
example) is a `TransportError`; an address not (yet) on this host leaves that link down,
counted and retried at every send.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import math
import os
import socket
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ringfence.core.ports import BoolArray, HeartbeatBatch, LeaseReport

MAGIC = b"RF"
VERSION = 3
SO_TIMESTAMPNS = 35  # Linux: SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); the socket module lacks it
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
HEADER = struct.Struct("!2sBBHQQBQH")  # magic, version, link, sender, epoch, seq, flags, store, n
TAIL_V2 = struct.Struct("!HQ")  # receiver, echo
TAIL = struct.Struct("!HQQQI")  # receiver, echo, report: lease, echoed seq, remaining ms
MAX_REMAINING_MS = 2**32 - 1
DIGEST = 32
WINDOW = 64
DEFAULT_PORT = 5420  # + the heartbeat network's index; not corosync's 5404/5405


class TransportError(OSError):
    """A heartbeat network can not be used at all (its address is taken by someone else)."""


def cluster_key(key: bytes, cluster: str) -> bytes:
    """The HMAC key of one cluster's heartbeats (version 2)."""
    return hmac.new(key, b"ringfence heartbeat v2\0" + cluster.encode(), hashlib.sha256).digest()


@dataclass
class LinkEndpoints:
    """Where each host listens on one heartbeat network: (address, port) by host index."""

    name: str
    addresses: list[tuple[str, int]]


@dataclass
class DropCounts:
    forged: int = 0
    replayed: int = 0  # an earlier life of the sender, or a sequence already seen
    stale: int = 0  # not echoing this host's current life (recorded earlier, or too early)
    misdirected: int = 0  # addressed to another host
    malformed: int = 0
    send_errors: int = 0
    unbound: int = 0  # sends skipped because a link's address is not on this host
    # The same, by where they came from (for /metrics): bad HMACs by link (the sender of a
    # forged datagram is not known), replayed and stale ones by (sender, link).
    forged_on: dict[int, int] = field(default_factory=dict)
    replayed_from: dict[tuple[int, int], int] = field(default_factory=dict)
    stale_from: dict[tuple[int, int], int] = field(default_factory=dict)


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


@dataclass(frozen=True, slots=True)
class Heartbeat:
    link: int
    sender: int
    epoch: int
    seq: int
    flags: int
    store: int
    heard: BoolArray
    receiver: int
    echo: int
    report: LeaseReport | None = None


def _report_fields(report: LeaseReport | None) -> tuple[int, int, int]:
    if report is None or report.lease <= 0 or report.remaining <= 0:
        return 0, 0, 0
    remaining_ms = min(MAX_REMAINING_MS, int(report.remaining * 1000))  # rounded down: a bound
    return report.lease, report.echo, remaining_ms


def encode_for(key: bytes, *, link: int, sender: int, epoch: int, seq: int, flags: int,
               store: int, heard: Sequence[bool], receivers: Sequence[tuple[int, int]],
               reports: Mapping[int, LeaseReport] | None = None) -> list[bytes]:
    """One datagram per (receiver, echo), carrying `reports[receiver]` if there is one; `key`
    is the cluster key (`cluster_key`). The common part is hashed once."""
    bits = np.packbits(np.asarray(heard, dtype=np.bool_)).tobytes()
    body = HEADER.pack(MAGIC, VERSION, link, sender, epoch, seq, flags, store,
                       len(heard)) + bits
    common = hmac.new(key, body, hashlib.sha256)
    out = []
    for receiver, echo in receivers:
        report = reports.get(receiver) if reports else None
        tail = TAIL.pack(receiver, echo, *_report_fields(report))
        mac = common.copy()
        mac.update(tail)
        out.append(body + tail + mac.digest())
    return out


def decode(key: bytes, data: bytes, hosts: int) -> Heartbeat:
    """The heartbeat in `data`, or ValueError (malformed) / PermissionError (bad HMAC)."""
    if len(data) < HEADER.size + TAIL_V2.size + DIGEST:
        raise ValueError("short datagram")
    body, digest = data[:-DIGEST], data[-DIGEST:]
    if not hmac.compare_digest(hmac.digest(key, body, "sha256"), digest):  # one-shot: C
        raise PermissionError("bad HMAC")
    magic, version, link, sender, epoch, seq, flags, store, count = HEADER.unpack_from(body)
    if magic != MAGIC or version not in (2, VERSION) or count != hosts or sender >= hosts:
        raise ValueError("not one of our heartbeats")
    size = (count + 7) // 8
    tail_format = TAIL if version == VERSION else TAIL_V2
    if len(body) != HEADER.size + size + tail_format.size:
        raise ValueError("truncated heartbeat")
    heard = _heard_of(body[HEADER.size:HEADER.size + size], count)
    report = None
    if version == VERSION:
        receiver, echo, lease, echoed, remaining_ms = TAIL.unpack_from(body, HEADER.size + size)
        if lease:
            report = LeaseReport(lease, echoed, remaining_ms / 1000)
    else:
        receiver, echo = TAIL_V2.unpack_from(body, HEADER.size + size)
    return Heartbeat(link, sender, epoch, seq, flags, store, heard, receiver, echo, report)


@functools.lru_cache(maxsize=256)
def _heard_of(bits: bytes, count: int) -> BoolArray:
    """The heard bitmap as booleans, read-only. Cached: a cluster's bitmaps are few and
    change only when a host is lost or found, and unpacking one with numpy cost more than
    the rest of a datagram's checks (issue 17: an idle agent decodes 10-40 a second per
    peer network)."""
    heard: BoolArray = np.unpackbits(np.frombuffer(bits, dtype=np.uint8))[:count].astype(np.bool_)
    heard.setflags(write=False)  # shared between heartbeats: nobody may change it
    return heard


def next_epoch(path: Path | None) -> int:
    """This life's epoch: the start time in ns, above every earlier life's (kept in `path`)."""
    epoch = time.time_ns()
    if path is None:
        return epoch
    with contextlib.suppress(OSError, ValueError):
        epoch = max(epoch, int(path.read_text().strip()) + 1)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(OSError):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{epoch}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return epoch


@dataclass
class UdpTransport:
    """The `Transport` of a real host. `links[j].addresses[i]` is where host `i` listens on
    heartbeat network `j`; this host binds its own address on every link. `cluster`: the
    cluster's name (bound into the HMAC key); `epoch_file`: where this host keeps its epoch."""

    key: bytes
    me: int
    links: list[LinkEndpoints]
    hosts: int
    cluster: str = ""
    epoch_file: Path | None = None
    drops: DropCounts = field(default_factory=DropCounts)
    # How much earlier than its read a datagram may be taken to have arrived (the kernel's
    # arrival stamp, bounded; 0: stamped when read). The heartbeat cycle reads its sockets
    # once a slot, so without the stamp a heartbeat looks up to one interval younger than
    # it is, and a lost host is noticed up to one interval late (issue 17). The runtime
    # passes heartbeat_interval: a step of the wall clock (whose stamps the kernel gives)
    # can then move a stamp by at most that, never later than the read.
    arrival_cap: float = 0.0

    def __post_init__(self) -> None:
        self.mac_key = cluster_key(self.key, self.cluster)
        self.epoch = next_epoch(self.epoch_file)
        # Heartbeat numbers start at the epoch in microseconds, so that they grow across
        # this host's lives too: a lease report that echoes a number of an earlier life can
        # never be taken for one of this life (`core.failsafe`).
        self.seq = self.epoch // 1000
        self.peer_epoch = [0] * self.hosts  # the newest epoch of each peer seen authentic
        self.replay = [[_Replay() for _ in self.links] for _ in range(self.hosts)]
        self.sockets: list[socket.socket | None] = []
        self.down: dict[str, str] = {}  # link -> why it is not bound
        for link in self.links:
            self.sockets.append(self._bind(link))
        if self.links and all(s is None for s in self.sockets):
            self.close()
            raise TransportError(errno.EADDRNOTAVAIL, "no heartbeat network can be bound: "
                                 + "; ".join(f"{n}: {w}" for n, w in self.down.items()))

    def _bind(self, link: LinkEndpoints) -> socket.socket | None:
        address = link.addresses[self.me]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            where = f"heartbeat network {link.name} on {address[0]}:{address[1]}"
            if exc.errno == errno.EADDRINUSE:
                raise TransportError(exc.errno, f"{where}: the port is already in use by "
                                     f"another program (corosync uses 5404-5405); choose "
                                     f"another networks[].port") from None
            self.down[link.name] = f"{where}: {exc.strerror}"
            return None
        sock.setblocking(False)
        if self.arrival_cap > 0:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.down.pop(link.name, None)
        return sock

    def send(self, heard: BoolArray, flags: int, store: int = 0,
             reports: Mapping[int, LeaseReport] | None = None) -> int:
        self.seq += 1
        flat = heard.tolist()
        receivers = [(i, self.peer_epoch[i]) for i in range(self.hosts) if i != self.me]
        for j, link in enumerate(self.links):
            sock = self.sockets[j]
            if sock is None:
                sock = self.sockets[j] = self._rebind(link)
                if sock is None:
                    self.drops.unbound += 1
                    continue
            datagrams = encode_for(self.mac_key, link=j, sender=self.me, epoch=self.epoch,
                                   seq=self.seq, flags=flags, store=store, heard=flat,
                                   receivers=receivers, reports=reports)
            for (i, _), datagram in zip(receivers, datagrams, strict=True):
                try:
                    sock.sendto(datagram, link.addresses[i])
                except OSError:
                    self.drops.send_errors += 1
        return self.seq

    def _rebind(self, link: LinkEndpoints) -> socket.socket | None:
        try:
            return self._bind(link)
        except TransportError as exc:
            self.down[link.name] = exc.strerror or str(exc)
            return None

    def receive(self) -> HeartbeatBatch:
        # Gathered in Python lists, made arrays once at the end: numpy's per-element
        # indexing, for every datagram, cost more than building the arrays (issue 17).
        heard_at = [[-math.inf] * len(self.links) for _ in range(self.hosts)]
        last: dict[int, Heartbeat] = {}  # sender -> its last believed heartbeat
        seqs = [0] * self.hosts
        reports: dict[int, LeaseReport] = {}
        now, wall = time.monotonic(), time.time()
        for j, sock in enumerate(self.sockets):
            if sock is None:
                continue
            for data, ancillary in _pending(sock):
                beat = self._check(data, j)
                if beat is None:
                    continue
                arrived = now - self._age(ancillary, wall)
                heard_at[beat.sender][j] = max(heard_at[beat.sender][j], arrived)
                last[beat.sender] = beat
                # The sequence is the sender's, shared by its links; an epoch's numbers grow.
                seqs[beat.sender] = max(seqs[beat.sender], beat.seq)
                if beat.report is not None:
                    reports[beat.sender] = beat.report
        return self._batch(heard_at, last, seqs, reports)

    def _batch(self, heard_at: list[list[float]], last: Mapping[int, Heartbeat],
               seqs: list[int], reports: dict[int, LeaseReport]) -> HeartbeatBatch:
        """The batch of `receive`: views, flags and stores from each sender's last believed
        heartbeat (valid where there is one)."""
        n = self.hosts
        views = np.zeros((n, n), dtype=np.bool_)
        valid = np.zeros(n, dtype=np.bool_)
        flags = np.zeros(n, dtype=np.int64)
        stores = np.zeros(n, dtype=np.int64)
        for sender, beat in last.items():
            views[sender] = beat.heard
            valid[sender] = True
            flags[sender] = beat.flags
            stores[sender] = beat.store
        return HeartbeatBatch(np.array(heard_at, dtype=np.float64).reshape(n, len(self.links)),
                              views, valid, flags, stores, np.array(seqs, dtype=np.int64),
                              reports)

    def _age(self, ancillary: list[tuple[int, int, bytes]], wall: float) -> float:
        """How long before `wall` (the wall clock read with the monotonic one) the datagram
        arrived, from the kernel's stamp, within [0, arrival_cap]; 0 without a stamp."""
        for level, kind, data in ancillary:
            stamped = level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
            if stamped and len(data) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                age = wall - (int(seconds) + int(nanoseconds) / 1e9)
                return min(self.arrival_cap, max(0.0, age))
        return 0.0

    def _check(self, data: bytes, link: int) -> Heartbeat | None:
        """The heartbeat if it is to be believed; else None, counted by why."""
        try:
            beat = decode(self.mac_key, data, self.hosts)
        except PermissionError:
            self.drops.forged += 1
            self.drops.forged_on[link] = self.drops.forged_on.get(link, 0) + 1
            return None
        except (ValueError, struct.error):
            self.drops.malformed += 1
            return None
        if beat.link != link or beat.sender == self.me:
            self.drops.malformed += 1
            return None
        if beat.receiver != self.me:
            self.drops.misdirected += 1
            return None
        # Authentic and ours: learn the sender's life, so that our heartbeats echo it.
        self.peer_epoch[beat.sender] = max(self.peer_epoch[beat.sender], beat.epoch)
        origin = (beat.sender, link)
        if beat.echo != self.epoch:
            self.drops.stale += 1
            self.drops.stale_from[origin] = self.drops.stale_from.get(origin, 0) + 1
            return None
        if not self.replay[beat.sender][link].accept(beat.epoch, beat.seq):
            self.drops.replayed += 1
            self.drops.replayed_from[origin] = self.drops.replayed_from.get(origin, 0) + 1
            return None
        return beat

    def close(self) -> None:
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def _pending(sock: socket.socket) -> Iterator[tuple[bytes, list[tuple[int, int, bytes]]]]:
    """The datagrams waiting on a non-blocking socket, with their ancillary data (the arrival
    stamp); none once it would block or fails."""
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(2048, _STAMP_SPACE)
        except OSError:  # BlockingIOError: nothing more; InterruptedError; anything else
            return
        yield data, ancillary
