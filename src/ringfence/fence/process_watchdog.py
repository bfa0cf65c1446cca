"""The supervisor process behind `ProcessWatchdog`: a watchdog timer for the process world.

    python -m ringfence.fence.process_watchdog --pid AGENT_PID --vm-dir STATE_DIR --timeout T

It reads its standard input the way ``/dev/watchdog`` reads writes: every byte restarts the
countdown, the magic byte ``V`` disarms it (the supervisor exits 0 without touching anything).
When the countdown runs out — the agent stopped petting, is paused (SIGSTOP), hangs, or died
without the magic close — it "resets the host": SIGKILL to the agent, then SIGKILL to every VM
process recorded in the hypervisor's state directory, and exits with status 2. End of input
without ``V`` is an agent that died: the countdown keeps running, as a hardware watchdog's does.

Why a pipe and not a file's mtime: the countdown then runs on this process's monotonic clock,
so a wall-clock step can neither fire nor silence it; and "closed without V" is visible.

Why hand-written: the demo and the tests need a watchdog that really kills, without root and
without resetting the machine they run on; no library offers that. It is a stand-in: killing
this supervisor disables it, which a hardware watchdog would not allow.

On start it prints ``armed`` on standard output once it watches (so `arm` can report failure).
VM processes are recognised as in `ringfence.hypervisor.process` (pid, start time and command
line), so a recycled pid is never killed; the agent is recognised by its start time, taken
when the supervisor starts. VMs found in the state directory are killed for a further
`SWEEP` seconds, to catch a VM whose launch the agent began just before it was killed.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from pathlib import Path

from ringfence.hypervisor.process_state import is_ours, read_records
from ringfence.hypervisor.process_vm import proc_starttime

SWEEP = 1.0  # seconds to keep killing VMs of the state directory after firing
FIRED = 2  # exit status after firing


def _kill(pid: int, starttime: int | None) -> bool:
    if starttime is not None and proc_starttime(pid) != starttime:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def fire(agent_pid: int, agent_start: int | None, vm_dir: Path) -> list[str]:
    """Kill the agent and every VM process of `vm_dir`; return what was killed."""
    killed = []
    if _kill(agent_pid, agent_start):
        killed.append(f"agent {agent_pid}")
    deadline = time.monotonic() + SWEEP
    while True:
        try:
            records = read_records(vm_dir)
        except (OSError, ValueError):
            records = []
        for record in records:
            if is_ours(record) and _kill(record.pid, record.starttime):
                killed.append(f"{record.vm} {record.pid}")
        if time.monotonic() >= deadline:
            return killed
        time.sleep(0.05)


def watch(agent_pid: int, vm_dir: Path, timeout: float) -> int:
    agent_start = proc_starttime(agent_pid)
    if agent_start is None:
        print(f"watchdog: no process {agent_pid} to watch", file=sys.stderr, flush=True)
        return 1
    stdin = sys.stdin.fileno()
    print("armed", flush=True)
    deadline = time.monotonic() + timeout
    open_input = True
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            killed = fire(agent_pid, agent_start, vm_dir)
            print(f"watchdog: not petted for {timeout:g}s; killed {', '.join(killed) or 'nothing'}",
                  file=sys.stderr, flush=True)
            return FIRED
        if not open_input:
            time.sleep(min(left, 0.05))
            continue
        ready, _, _ = select.select([stdin], [], [], min(left, 0.05))
        if not ready:
            continue
        data = os.read(stdin, 4096)
        if not data:
            open_input = False  # the agent is gone without the magic close: keep counting
            continue
        if b"V" in data:
            return 0
        deadline = time.monotonic() + timeout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringfence.fence.process_watchdog",
                                     description="Kill an agent and its VMs unless petted.")
    parser.add_argument("--pid", type=int, required=True, help="the agent's pid")
    parser.add_argument("--vm-dir", type=Path, required=True,
                        help="the process hypervisor's state directory")
    parser.add_argument("--timeout", type=float, required=True, help="seconds")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return watch(args.pid, args.vm_dir, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
