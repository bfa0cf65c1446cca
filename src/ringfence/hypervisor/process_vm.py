"""The "VM" of the process hypervisor: a small program that behaves like a guest for the demo
and the integration tests.

    python -m ringfence.hypervisor.process_vm --vm NAME --host HOST --token T --disk FILE \
        --port-file F [--state-file S] [--log L] [--detach]
        [--incoming [--incoming-for SECONDS] [--source-pid PID [--source-starttime TICKS]]]

While it runs it

* answers ``GET /`` on 127.0.0.1 (a free port chosen by the kernel, written to the port file)
  with ``vm NAME on HOST token T``: what `ProcessGuestChecks` verifies;
* appends one JSON line ``{"vm", "host", "token", "seq", "t"}`` to the shared "disk" file every
  100 ms, with ``O_APPEND`` and an exclusive ``flock`` around each write, so that a test reading
  the disk sees exactly which host wrote when: two writers of one VM interleaving on the disk is
  a split brain.

With ``--state-file`` it writes its identity there (``vm``, ``host``, ``pid``, ``starttime`` from
``/proc/self/stat``, ``token``, ``port_file``) *before* it reports ready, so a VM that is up is
always findable by a restarted agent or by the process watchdog, and it re-reads the token from
that file on every tick (the hypervisor rewrites it when the agent re-tokens a running VM).

With ``--detach`` it forks: the first process exits at once and the VM goes on in a new session,
re-parented to init, so that it survives its agent like a real VM survives a crash of the HA
agent (only ``destroy``, a ``stop`` or the watchdog end it). It prints ``ready PID`` on standard
output once it serves HTTP, then closes standard output; anything it has to say later goes to
the ``--log`` file.

With ``--incoming`` it is the target of a migration (QEMU's ``-incoming``): it starts, opens its
disk and binds its port, writes its state file marked ``"incoming": true``, prints ``incoming
PID`` instead of ``ready PID``, and then waits, writing nothing to the disk and answering no
guest check (no port file), until SIGUSR1 says that the source is paused: only then does it
rewrite its state file as a running VM's, write its port file and its first disk line. The
marked state file is libvirt's paused incoming domain: the target's hypervisor lists it, so the
target's self-fence (and its process watchdog) ends it like any VM of that host, and the source,
which watches its copy during the copy, fails the migration at once. It waits at most
``--incoming-for`` seconds: a migration whose source died (its host lost power mid-copy) leaves
no copy waiting for ever, as libvirt tears down an incoming guest whose migration failed. So the
slow part of a start (the interpreter, the imports) happens while the source still runs, and the
switch-over costs one signal. SIGTERM while it waits ends it, and it removes its state file.

Failure semantics: any error while starting (port file or state file not writable, disk file
not openable) ends the program with exit status 1 and a message on stderr (the log file), and
no ``ready`` line. A failing disk write later is logged and retried on the next tick: a real
guest does not die when its storage hiccups. SIGTERM is a clean guest shutdown: finish the
current write, remove the port file (and the state file, if it is still ours), exit 0.

Only the standard library is imported here: a VM starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.server
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

TICK = 0.1  # seconds between two disk writes


def proc_stat(pid: int) -> bytes | None:
    """/proc/PID/stat after the command name (from the state field on), or None if the process
    does not exist. Plain `open`: the agent reads it for every VM at every cycle, and pathlib's
    path parsing cost more than the read (issue 17)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :]


def starttime_in(stat: bytes) -> int | None:
    """Field 22 of a `proc_stat` (start time in clock ticks since boot), None if unreadable."""
    try:
        return int(stat.split()[19])
    except (IndexError, ValueError):
        return None


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot): with the pid, the
    identity of a process that survives pid reuse. None if the process does not exist."""
    stat = proc_stat(pid)
    return None if stat is None else starttime_in(stat)


def alive_in(stat: bytes | None) -> bool:
    """A `proc_stat` of a process that exists and is not a zombie (paused is alive)."""
    return stat is not None and stat[:1] not in (b"Z", b"X")


def runs(pid: int, starttime: int | None) -> bool:
    """Process `pid` (started at `starttime`, when given) exists and is not a zombie (a
    paused process runs): one /proc read."""
    stat = proc_stat(pid)
    if stat is None or not alive_in(stat):
        return False
    return starttime is None or starttime_in(stat) == starttime


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class _VM:
    def __init__(self, args: argparse.Namespace) -> None:
        self.vm: str = args.vm
        self.host: str = args.host
        self.token: int = args.token
        self.disk = Path(args.disk)
        self.port_file = Path(args.port_file)
        self.state_file = Path(args.state_file) if args.state_file else None
        self.stopping = threading.Event()
        self.resumed = threading.Event()  # --incoming: the source is paused, take over
        self.seq = 0
        self.server: http.server.ThreadingHTTPServer | None = None
        self.disk_fd = -1

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        self.disk_fd = os.open(self.disk, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        vm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"vm {vm.vm} on {vm.host} token {vm.token}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), name="http",
                         daemon=True).start()

    def show(self) -> None:
        """Make the running VM findable: its port file, then its state file (a migration
        waits for the state file without the incoming mark: the VM is then complete)."""
        assert self.server is not None
        _write_atomically(self.port_file, f"{self.server.server_address[1]}\n")
        if self.state_file is not None:
            _write_atomically(self.state_file, json.dumps(self.identity()) + "\n")

    def arrive(self) -> None:
        """--incoming: the state file of a copy that waits (listed, not yet running)."""
        if self.state_file is not None:
            _write_atomically(self.state_file,
                              json.dumps({**self.identity(), "incoming": True}) + "\n")

    def identity(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "host": self.host,
            "pid": os.getpid(),
            "starttime": proc_starttime(os.getpid()),
            "token": self.token,
            "port_file": str(self.port_file),
        }

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        while not self.stopping.is_set():
            self._refresh_token()
            self._write()
            self.stopping.wait(TICK)
        self._shutdown()

    def _refresh_token(self) -> None:
        if self.state_file is None:
            return
        try:
            record = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(record, dict) and record.get("pid") == os.getpid():
            token = record.get("token")
            if isinstance(token, int):
                self.token = token

    def _write(self) -> None:
        line = json.dumps({"vm": self.vm, "host": self.host, "token": self.token,
                           "seq": self.seq, "t": time.time()}) + "\n"
        try:
            fcntl.flock(self.disk_fd, fcntl.LOCK_EX)
            try:
                os.write(self.disk_fd, line.encode())
            finally:
                fcntl.flock(self.disk_fd, fcntl.LOCK_UN)
        except OSError as exc:
            print(f"vm {self.vm}: disk write failed: {exc}", file=sys.stderr, flush=True)
            return
        self.seq += 1

    def _shutdown(self, *, shown: bool = True) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if shown:  # an incoming VM that never took over wrote no port file
            with contextlib.suppress(OSError):
                self.port_file.unlink()
        if self.state_file is not None:
            try:
                record = json.loads(self.state_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return
            if isinstance(record, dict) and record.get("pid") == os.getpid():
                with contextlib.suppress(OSError):
                    self.state_file.unlink()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ringfence.hypervisor.process_vm",
                                     description="A process that stands in for a VM.")
    parser.add_argument("--vm", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--token", required=True, type=int)
    parser.add_argument("--disk", required=True, help="shared disk file to append to")
    parser.add_argument("--port-file", required=True, help="where to write the HTTP port")
    parser.add_argument("--state-file", help="where to write pid, start time and token")
    parser.add_argument("--log", help="stderr of the detached VM")
    parser.add_argument("--detach", action="store_true",
                        help="fork into a new session; print 'ready PID' once serving")
    parser.add_argument("--incoming", action="store_true",
                        help="a migration's target: print 'incoming PID', wait for SIGUSR1")
    parser.add_argument("--incoming-for", type=float, default=60.0, metavar="SECONDS",
                        help="--incoming: give up (exit 0, no trace) after this long")
    parser.add_argument("--source-pid", type=int, metavar="PID",
                        help="--incoming: give up at once when this process (the source) ends")
    parser.add_argument("--source-starttime", type=int, metavar="TICKS",
                        help="--incoming: the source's start time (/proc/PID/stat field 22)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.detach:
        if os.fork() != 0:
            os._exit(0)  # the launcher returns at once; the VM is re-parented to init
        os.setsid()
        log_fd = os.open(args.log or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log_fd, 2)  # the launcher's stderr pipe must not stay open in the VM
        os.close(log_fd)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    vm = _VM(args)

    def on_term(signum: int, frame: FrameType | None) -> None:
        vm.stopping.set()

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        vm.resumed.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, on_usr1)
    try:
        vm.start()
        if args.incoming:
            vm.arrive()
        else:
            vm.show()
    except OSError as exc:
        print(f"vm {args.vm}: can not start: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"{'incoming' if args.incoming else 'ready'} {os.getpid()}", flush=True)
    if args.detach:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
    if args.incoming and not _take_over(vm, args.incoming_for, args.source_pid,
                                        args.source_starttime):
        return 0
    vm.run()
    return 0


def _take_over(vm: _VM, patience: float, source_pid: int | None,
               source_start: int | None) -> bool:
    """--incoming: wait for SIGUSR1 (True, the VM is shown), or SIGTERM, `patience` seconds
    or the end of the source process (False, gone: as libvirt tears down the incoming domain
    of a migration whose source died, so the target's agent does not take a copy that will
    never run for its VM). The source is killed only after the switch-over (our state file
    without the incoming mark), so its end while we wait is always a failed migration."""
    deadline = time.monotonic() + patience
    while not vm.resumed.is_set():
        if (vm.stopping.is_set() or time.monotonic() >= deadline
                or (source_pid is not None and not runs(source_pid, source_start))):
            vm._shutdown(shown=False)
            return False
        # A short wait, not signal.pause(): a signal that lands between the check and the
        # pause would leave it waiting for ever.
        vm.resumed.wait(0.01)
    try:
        vm.show()
    except OSError as exc:
        print(f"vm {vm.vm}: can not take over: {exc}", file=sys.stderr, flush=True)
        vm._shutdown()
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
