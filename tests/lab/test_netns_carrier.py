"""A real carrier cut, seen by LinuxProbes through the real /sys/class/net (root only).

A veth pair joins the root network namespace (host side, where LinuxProbes looks) and a
namespace made for this test (peer side). Setting the peer down inside its namespace takes the
carrier away from the host side, exactly like a cable pulled at the switch; setting the host side
itself down makes the kernel answer EINVAL when its carrier is read. No addresses are assigned
and IPv6 address generation is off on both ends: the test sends no traffic at all. Everything
is removed in a `finally`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ringfence.config import ClusterConfig
from ringfence.core.ports import NicReading
from ringfence.probes.host import LinuxProbes

SYSFS = Path("/sys/class/net")


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                          check=False)


def must(*args: str) -> None:
    done = ip(*args)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_carrier_cut_in_a_namespace() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a network namespace and a veth pair")
    tag = f"{os.getpid() % 100000}"
    namespace, host_side, peer = f"rf-lab-{tag}", f"rfh{tag}", f"rfp{tag}"
    try:
        created = ip("netns", "add", namespace)
    except FileNotFoundError:
        pytest.skip("the ip command (iproute2) is not installed")
    if created.returncode != 0:
        pytest.skip(f"can not create a network namespace: {created.stderr.strip()}")
    try:
        made = ip("link", "add", host_side, "type", "veth", "peer", "name", peer, "netns",
                  namespace)
        if made.returncode != 0:
            pytest.skip(f"can not create a veth pair: {made.stderr.strip()}")
        ip("link", "set", "dev", host_side, "addrgenmode", "none")
        ip("-n", namespace, "link", "set", "dev", peer, "addrgenmode", "none")
        must("link", "set", host_side, "up")
        must("-n", namespace, "link", "set", peer, "up")
        mac = (SYSFS / host_side / "address").read_text().strip()
        config = ClusterConfig.model_validate({
            "networks": [{"name": "ring0", "role": "heartbeat"}, {"name": "biz", "role": "vm"}],
            "hosts": [{"name": "h1", "cpus": 1, "memory": "1GiB", "networks": ["ring0", "biz"],
                       "interfaces": {"biz": {"mac": mac, "name": "a-stale-name"}}}],
        })
        probes = LinuxProbes(config, "h1")

        def reading() -> NicReading:
            (nic,) = [n for n in probes.read().nics if n.mac == mac]
            return nic

        assert wait_until(lambda: reading().carrier), "the veth never got carrier"
        up = reading()
        assert up.name == host_side  # found by MAC, whatever the config's name hint says

        must("-n", namespace, "link", "set", peer, "down")  # the cable is pulled
        assert wait_until(lambda: not reading().carrier)
        cut = reading()
        assert cut.carrier_changes > up.carrier_changes

        must("-n", namespace, "link", "set", peer, "up")
        assert wait_until(lambda: reading().carrier)
        assert reading().carrier_changes > cut.carrier_changes

        must("link", "set", host_side, "down")  # the kernel now refuses to read carrier
        with pytest.raises(OSError) as raised:
            (SYSFS / host_side / "carrier").read_text()
        assert raised.value.errno == 22  # EINVAL
        assert reading().carrier is False
    finally:
        ip("link", "del", host_side)
        ip("netns", "del", namespace)
    assert not (SYSFS / host_side).exists()
