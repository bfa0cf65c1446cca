"""Verification of real VMs by TCP and by the guest agent: answered, refused, not configured."""

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


def agent_config() -> ClusterConfig:
    return ClusterConfig.model_validate({
        "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": "h1", "cpus": 4, "memory": "8GiB"}],
        "vms": [{"name": "db", "cpus": 1, "memory": "1GiB",
                 "verify": {"guest_agent": True, "timeout": "2s"}}],
    })


def test_a_guest_agent_check_asks_the_agent_with_the_vm_s_timeout() -> None:
    asked: list[tuple[str, float]] = []

    def agent(vm: str, timeout: float) -> bool:
        asked.append((vm, timeout))
        return len(asked) == 1

    checks = NetworkGuestChecks(agent_config(), agent=agent)
    assert checks.configured("db")
    assert answer(checks, "db") is True
    assert answer(checks, "db") is False  # the agent went silent
    assert asked == [("db", 2.0), ("db", 2.0)]


def test_without_a_way_to_ask_guest_agents_nothing_claims_a_verification() -> None:
    # Process VMs, or a host whose hypervisor is not libvirt: such a VM is not checked.
    checks = NetworkGuestChecks(agent_config())
    assert not checks.configured("db") and checks.check("db") is None


def test_an_agent_that_raises_did_not_see_the_guest_answer() -> None:
    def agent(vm: str, timeout: float) -> bool:
        raise RuntimeError("libvirt went away")

    assert answer(NetworkGuestChecks(agent_config(), agent=agent), "db") is False
