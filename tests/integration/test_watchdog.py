"""Watchdogs for real: the process watchdog kills an agent that stops petting (or is paused,
or dies) together with its VM processes; the systemd and Linux watchdogs speak their
protocols and refuse what they can not do safely."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.fence.watchdog import LinuxWatchdog, ProcessWatchdog, SystemdWatchdog

TIMEOUT = 1.0  # the armed watchdog timeout
SLACK = 6.0  # generous bound on how much later than the timeout the kill may come

# A stand-in agent: two process VMs, a process watchdog, and a mode.
AGENT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from ringfence.fence.watchdog import ProcessWatchdog
    from ringfence.hypervisor.process import ProcessHypervisor, read_records
    state, disk = Path(sys.argv[1]), Path(sys.argv[2])
    mode, timeout = sys.argv[3], float(sys.argv[4])
    hv = ProcessHypervisor("h1", state, disk)
    hv.start("web", 1).wait(30)
    hv.start("db", 2).wait(30)
    dog = ProcessWatchdog(state, beat_file=state.parent / "h1.beat")
    dog.arm(timeout)
    dog.pet()
    pids = [r.pid for r in read_records(state)]
    print(json.dumps({"vms": pids, "supervisor": dog.process.pid}), flush=True)
    if mode == "quiet":
        time.sleep(60)
    elif mode == "disarm":
        dog.pet()
        dog.disarm()
        print("disarmed", flush=True)
        time.sleep(60)
    else:
        while True:
            dog.pet()
            time.sleep(0.05)
""")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_dead(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return not any(alive(pid) for pid in pids)


class Agent:
    def __init__(self, tmp: Path, mode: str) -> None:
        self.state = tmp / "vms" / "h1"
        self.process = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(self.state), str(tmp / "disk"), mode,
             str(TIMEOUT)], stdout=subprocess.PIPE, start_new_session=True)
        assert self.process.stdout is not None
        info = json.loads(self.process.stdout.readline())
        self.ready = time.monotonic()
        self.vms: list[int] = info["vms"]
        self.supervisor: int = info["supervisor"]

    def line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode().strip()

    def dead_within(self, timeout: float) -> bool:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def cleanup(self) -> None:
        for pid in [self.process.pid, self.supervisor, *self.vms]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.cleanup()


def test_agent_that_stops_petting_is_killed_with_its_vms(tmp_path: Path,
                                                         agents: list[Agent]) -> None:
    agent = Agent(tmp_path, "quiet")
    agents.append(agent)
    assert all(alive(pid) for pid in agent.vms)
    assert agent.dead_within(TIMEOUT + SLACK)
    assert agent.process.returncode == -signal.SIGKILL
    assert time.monotonic() - agent.ready >= TIMEOUT * 0.9  # not before the timeout
    assert wait_dead(agent.vms, SLACK)
    assert wait_dead([agent.supervisor], SLACK)  # the supervisor is done after firing
    assert (tmp_path / "vms" / "h1.beat").exists()  # pet touched the beat file


def test_paused_agent_is_killed_with_its_vms(tmp_path: Path, agents: list[Agent]) -> None:
    agent = Agent(tmp_path, "pet")
    agents.append(agent)
    time.sleep(2 * TIMEOUT)
    assert agent.process.poll() is None, "a petting agent must not be killed"
    assert all(alive(pid) for pid in agent.vms)
    os.kill(agent.process.pid, signal.SIGSTOP)  # a hung agent: no more pets
    assert agent.dead_within(TIMEOUT + SLACK)
    assert wait_dead(agent.vms, SLACK)


def test_agent_that_dies_without_magic_close_still_fires(tmp_path: Path,
                                                         agents: list[Agent]) -> None:
    agent = Agent(tmp_path, "pet")
    agents.append(agent)
    agent.process.kill()  # the agent crashes; its supervisor (own session) goes on counting
    agent.process.wait()
    assert alive(agent.supervisor) or wait_dead(agent.vms, 0)
    assert wait_dead(agent.vms, TIMEOUT + SLACK)


def test_disarm_stops_the_supervisor_cleanly(tmp_path: Path, agents: list[Agent]) -> None:
    agent = Agent(tmp_path, "disarm")
    agents.append(agent)
    assert agent.line() == "disarmed"
    assert wait_dead([agent.supervisor], SLACK)
    time.sleep(TIMEOUT + 0.5)
    assert agent.process.poll() is None
    assert all(alive(pid) for pid in agent.vms)


def test_process_watchdog_arm_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        ProcessWatchdog(tmp_path, python="/nonexistent/python").arm(1.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with pytest.raises(OSError, match="did not start"):  # no such agent to watch
        ProcessWatchdog(tmp_path, agent_pid=dead.pid).arm(1.0)
    with pytest.raises(OSError):
        ProcessWatchdog(tmp_path).arm(0)


# ------------------------------------------------------------------ systemd's sd_notify


def test_systemd_watchdog_speaks_sd_notify(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2.0)
        dog = SystemdWatchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000",
                               "WATCHDOG_PID": str(os.getpid())})
        dog.arm(3.0)
        assert server.recv(100) == b"WATCHDOG=1"
        dog.pet()
        assert server.recv(100) == b"WATCHDOG=1"
        dog.disarm()
        assert server.recv(100) == b"STOPPING=1"
        dog.pet()  # disarmed: nothing is sent, nothing raises
        with pytest.raises(TimeoutError):
            server.settimeout(0.1)
            server.recv(100)


def test_systemd_watchdog_abstract_socket() -> None:
    name = f"ringfence-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2.0)
        SystemdWatchdog({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"}).arm(1.0)
        assert server.recv(100) == b"WATCHDOG=1"


@pytest.mark.parametrize(("environ", "why"), [
    ({}, "NOTIFY_SOCKET"),
    ({"NOTIFY_SOCKET": "/run/x"}, "WATCHDOG_USEC"),
    ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "9000000"}, "longer than"),
    ({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, "pid 1"),
])
def test_systemd_watchdog_refuses_unsafe_setups(environ: dict[str, str], why: str) -> None:
    with pytest.raises(OSError, match=why):
        SystemdWatchdog(environ).arm(4.0)


def test_systemd_watchdog_pet_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        dog = SystemdWatchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        dog.arm(1.0)
    path.unlink()  # systemd went away
    dog.pet()
    assert dog.last_error is not None


# ------------------------------------------------------------------ /dev/watchdog


def test_linux_watchdog_refuses_what_is_not_a_watchdog(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        LinuxWatchdog(tmp_path / "missing").arm(4.0)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    dog = LinuxWatchdog(plain)
    with pytest.raises(OSError):  # the ioctl fails on a regular file (ENOTTY)
        dog.arm(4.0)
    assert dog.fd is None
    assert plain.read_bytes() == b"V"  # closed with the magic character, not left running
    with pytest.raises(OSError, match="whole seconds"):
        LinuxWatchdog(plain).arm(0.5)
    dog.pet()  # not armed: a no-op
    dog.disarm()
