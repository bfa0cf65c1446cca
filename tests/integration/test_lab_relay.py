"""The lab's heartbeat relay delays every datagram by a random time in [0, jitter), keeps
every one, and sends it on unchanged (on loopback, without namespaces or root)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from ringfence.etcd_local import free_port


def test_relay_delays_within_the_jitter_and_loses_nothing() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5.0)
    target = receiver.getsockname()[1]
    local = free_port()
    relay = subprocess.Popen([sys.executable, "-m", "ringfence.lab.relay", "--bind",
                              "127.0.0.1", "--mark", "0", "--jitter", "0.2", "--route",
                              f"{local}:127.0.0.1:{target}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None
        assert relay.stdout.readline().strip() == "relaying"
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent: dict[bytes, float] = {}
        for n in range(40):
            payload = f"beat {n}".encode()
            sent[payload] = time.monotonic()
            sender.sendto(payload, ("127.0.0.1", local))
            time.sleep(0.01)
        delays = []
        for _ in range(40):
            data = receiver.recv(100)
            delays.append(time.monotonic() - sent[data])
        assert len(delays) == 40  # every datagram arrives, unchanged
        assert max(delays) < 0.2 + 0.5  # at most the jitter (and this machine's slack)
        assert max(delays) - min(delays) > 0.05  # and the delays really vary
    finally:
        relay.kill()
        relay.wait()
        receiver.close()
