"""Heartbeat jitter for the lab: a user-space relay inside a host's namespace.

This kernel has no ``netem`` qdisc, so delay is made in user space. In the sending host's
namespace, an nftables NAT rule redirects every heartbeat datagram this host sends to a peer
(UDP to the peer's address and the network's heartbeat port) to a local port of this relay,
one port per peer; the relay holds each datagram for a delay drawn uniformly from
[0, jitter) and then sends it, unchanged, to the peer from this host's own address on that
network, with a firewall mark that the NAT rule lets through. The datagram still crosses the
lab's switch, so partitions, pulled cables and packet loss apply to it as to any other.

    python -m ringfence.lab.relay --bind ADDRESS --mark MARK --jitter SECONDS \
        --route LOCAL_PORT:PEER_ADDRESS:PEER_PORT [--route ...]

Why hand-written: a few dozen lines of `socket` and `heapq`; no library delays UDP
datagrams between network namespaces. It runs only while its host is up (it dies with the
host's namespace, and the lab starts it again at boot). Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import random
import select
import socket
import sys
import time

SO_MARK = getattr(socket, "SO_MARK", 36)


def serve(bind: str, mark: int, jitter: float, routes: list[tuple[int, str, int]]) -> int:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if mark:
        sender.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)  # needs CAP_NET_ADMIN
    sender.bind((bind, 0))
    sender.setblocking(False)
    listeners: dict[int, tuple[str, int]] = {}
    sockets: list[socket.socket] = []
    for local, peer, port in routes:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", local))
        sock.setblocking(False)
        sockets.append(sock)
        listeners[sock.fileno()] = (peer, port)
    print("relaying", flush=True)
    queue: list[tuple[float, int, bytes, tuple[str, int]]] = []
    order = itertools.count()
    rng = random.Random()
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        ready, _, _ = select.select(sockets, [], [], timeout)
        now = time.monotonic()
        for sock in ready:
            while True:
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    break
                delay = rng.uniform(0.0, jitter) if jitter > 0 else 0.0
                heapq.heappush(queue, (now + delay, next(order), data,
                                       listeners[sock.fileno()]))
        while queue and queue[0][0] <= time.monotonic():
            _, _, data, target = heapq.heappop(queue)
            with contextlib.suppress(OSError):  # no carrier: the datagram is lost, as it would be
                sender.sendto(data, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringfence.lab.relay")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--mark", type=int, required=True)
    parser.add_argument("--jitter", type=float, required=True)
    parser.add_argument("--route", action="append", default=[], required=True,
                        help="LOCAL_PORT:PEER_ADDRESS:PEER_PORT")
    args = parser.parse_args(argv)
    routes = []
    for text in args.route:
        local, peer, port = text.split(":")
        routes.append((int(local), peer, int(port)))
    try:
        return serve(args.bind, args.mark, args.jitter, routes)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"relay: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
