"""The demo's power controller, as a fence agent speaking the ClusterLabs stdin protocol.

`ringfence demo` gives every host this fence agent: `action=off` kills every process of the
host (its agent, its VMs, its watchdog supervisor: what a power cut does), `status` reports off
(exit 2) once none is left, `on` asks the demo to start the host's agent again. With
`netns=NAME` (the QEMU demo: each host is a network namespace with its own libvirtd), every
process of that namespace is the host's too: libvirtd, virtlockd and the QEMU guests. It
imports nothing heavy, because a fence agent's start-up time is part of the failover time.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from pathlib import Path


def pids_of(workdir: Path, host: str, *, vm: str | None = None) -> list[int]:
    """This demo's processes of one host (agent, VMs, watchdog supervisor), by command line."""
    pids = []
    marker = str(workdir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args if a]
        if not any(marker in w for w in words) or "ringfence.fence.demo_power" in words:
            continue
        pairs = set(itertools.pairwise(words))
        is_host = ("--host", host) in pairs or any(
            w.endswith(f"/vms/{host}") or w.endswith(f"/{host}.beat") for w in words)
        if is_host and (vm is None or ("--vm", vm) in pairs):
            pids.append(int(entry.name))
    return sorted(pids)


def _kill_namespace(name: str) -> None:
    from ringfence.lab import netns

    with contextlib.suppress(OSError, netns.LabError):
        inode = netns.inode(name)
        before = netns.alive_in(inode)
        netns.kill_all(inode)
        netns.wait_exited(before, 10.0)  # the guests' disk locks are free once "off"


def _namespace_alive(name: str) -> bool:
    from ringfence.lab import netns

    try:
        return bool(netns.alive_in(netns.inode(name)))
    except OSError:
        return False  # the namespace is gone: nothing of the host runs


# ---------------------------------------------------------------------- power fence agent
def power_agent(argv: list[str]) -> int:
    """A fence agent for demo hosts, speaking the ClusterLabs stdin protocol:
    `action=off|on|reboot|status|monitor`, `plug=HOST`, `workdir=DIR`."""
    params = {}
    for line in sys.stdin.read().splitlines():
        if "=" in line:
            name, value = line.split("=", 1)
            params[name.strip()] = value.strip()
    action, host = params.get("action", "status"), params.get("plug", "")
    workdir = Path(params.get("workdir", ""))
    power = workdir / "power"
    if not host or not power.is_dir():
        sys.stderr.write("fence_demo: plug= and workdir= of a running demo are required\n")
        return 1
    if action in ("monitor", "list", "metadata"):
        return 0
    namespace = params.get("netns", "")
    if action in ("off", "reboot"):
        (power / f"{host}.off").write_text("fenced\n")
        if namespace:
            _kill_namespace(namespace)
        for pid in pids_of(workdir, host):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if action == "off":
            return 0
    if action in ("on", "reboot"):
        (power / f"{host}.on").write_text("power on\n")
        return 0
    if action == "status":
        off = ((power / f"{host}.off").exists() and not pids_of(workdir, host)
               and not (namespace and _namespace_alive(namespace)))
        return 2 if off else 0
    sys.stderr.write(f"fence_demo: unknown action {action}\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(power_agent(sys.argv[1:]))
