"""`ringfence lab run` leaves nothing behind: not on SIGTERM, not on Ctrl-C, not when two labs
run side by side (they take different slots: other names, other addresses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ringfence.lab import netns

pytestmark = pytest.mark.lab

IDLE = {
    "name": "idle",
    "duration": "10m",
    "cluster": {
        "networks": [{"name": "ring0", "role": "heartbeat"},
                     {"name": "ring1", "role": "heartbeat"}],
        "hosts": [{"name": f"host{i}", "cpus": 4, "memory": "8GiB"} for i in (1, 2, 3)],
        "vms": [{"name": "app", "cpus": 1, "memory": "1GiB", "host": "host1"}],
    },
}


def start_lab(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ringfence.cli", "lab", "run", str(path),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for_start(process: subprocess.Popen[str], timeout: float = 60.0) -> list[str]:
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("t=0:"):
            return lines
    pytest.fail("the lab did not start: " + "".join(lines))


def lab_pids(directory: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(directory.encode() in word for word in words):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_two_labs_side_by_side_and_both_torn_down_on_a_signal(
        tmp_path: Path, signum: int, no_new_namespaces: None) -> None:
    path = tmp_path / "idle.yaml"
    path.write_text(yaml.safe_dump(IDLE))
    first, second = start_lab(path), start_lab(path)
    try:
        started = [wait_for_start(first), wait_for_start(second)]
        slots = [next(line for line in lines if line.startswith("lab slot")) for lines in started]
        directories = [line.rsplit(" ", 1)[1].strip() for line in slots]
        assert directories[0] != directories[1]  # two slots: other names and addresses
        ours = [n for n in netns.names() if n.startswith(("rfl", ))]
        assert len({n.split("-")[0] for n in ours}) >= 2
        time.sleep(3.0)
        for process in (first, second):
            os.kill(process.pid, signum)
        for process in (first, second):
            assert process.wait(timeout=60) == 130
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()
    for directory in directories:
        assert not Path(directory).exists()
        assert lab_pids(directory) == []
        assert directory not in Path("/proc/self/mountinfo").read_text()
