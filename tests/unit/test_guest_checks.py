"""Verification of real VMs by TCP: answered, refused, not configured."""

from __future__ import annotations

import socket
import time

from ringfence.config import ClusterConfig
from ringfence.probes.guest import NetworkGuestChecks


def config(port: int) -> ClusterConfig:
    return ClusterConfig.model_validate({
        "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB"}],
        "vms": [{"name": "web", "cpus": 1, "memory": "1GiB",
                 "verify": {"tcp": f"127.0.0.1:{port}", "timeout": "1s"}},
                {"name": "plain", "cpus": 1, "memory": "1GiB"}],
    })


def answer(checks: NetworkGuestChecks, vm: str) -> bool | None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        result = checks.check(vm)
        if result is not None:
            return result
        time.sleep(0.02)
    return None


def test_tcp_check_sees_a_listening_guest_and_a_silent_one() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        checks = NetworkGuestChecks(config(port))
        assert checks.configured("web") and not checks.configured("plain")
        assert answer(checks, "web") is True
    assert answer(NetworkGuestChecks(config(port)), "web") is False
    assert NetworkGuestChecks(config(port)).check("plain") is None
