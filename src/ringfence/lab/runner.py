"""One lab run: build the cluster, replay the scenario in real time, judge it, tear it down.

Order of a run (`LabRun.run`):

1. refuse what the lab can not do (`faults.refusals`; before anything is created);
2. take a slot, make the lab's directory (a shared bind mount of itself, so that mounts the
   lab makes later, such as an unwritable datastore, reach the hosts' mount namespaces),
   build the namespaces (`topology`), write the cluster files, start the store members and
   wait until the store has a leader;
3. t = 0: start every host's agent (they register, elect a leader and start their VMs, as a
   real cluster does on an empty store; the simulator's agents are already running at t = 0);
4. apply each event at its time (`faults.FAULTS`), watch the hosts (fence agents' power
   requests, watchdog resets) until the scenario's duration has passed. The lab watches its
   own loop too: when the machine stood still (a turn took more than `STALL` seconds) it is
   listed in ``lab.stalls``, and an event applied later than the tolerance is a lab error
   (the run then says nothing about ringfence: it fails as a lab failure);
5. kill every process of the lab, read the journals and the disk, judge (`judge`);
6. always, also on errors, Ctrl-C and SIGTERM: kill what is left, unmount, delete the
   namespaces, remove the directory (kept with ``keep``), release the slot.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import platform
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ringfence.agent.journal import read_journal
from ringfence.core.event_text import render
from ringfence.core.events import fact_from_fields
from ringfence.lab import netns
from ringfence.lab.cluster_file import write_cluster_files
from ringfence.lab.faults import FAULTS, FaultContext, refusals
from ringfence.lab.hosts import Hosts, write_fence_agent
from ringfence.lab.jitter import Jitter
from ringfence.lab.judge import (
    LabResult,
    LabWorld,
    alerts_of,
    build_host_states,
    judge_run,
)
from ringfence.lab.netns import LabError
from ringfence.lab.paths import LabPaths
from ringfence.lab.records import LabRecords
from ringfence.lab.slots import Slot, take_slot
from ringfence.lab.store_members import LabStore
from ringfence.lab.topology import Topology
from ringfence.lab.truth import Write, read_writes, runs_of
from ringfence.sim.scenario import Event, Scenario
from ringfence.sim.world import JournalEntry

TOOLS = ("ip", "nft", "mount", "umount")
STALL = 1.0  # seconds: a loop turn that took longer means the machine stood still


class LabRefused(Exception):
    """The lab can not replay this scenario (or can not run on this machine): exit 2."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass
class LabOptions:
    tolerance: float = 1.0
    keep: bool = False
    workdir: Path | None = None
    progress: Callable[[str], None] | None = None
    # beyond the scenario's sim.packet_loss / sim.link_jitter (benchmarks):
    loss: dict[str, float] = field(default_factory=dict)  # heartbeat network -> probability
    jitter: dict[tuple[str, str], float] = field(default_factory=dict)  # (host, network) -> s


def check_machine() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (it creates network namespaces, veths and mounts)")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not installed (scripts/dev-setup installs what the lab "
                            f"needs)")
    from ringfence.etcd_local import ETCD

    if ETCD is None:
        problems.append("etcd is not installed (apt-get install etcd-server)")
    return problems


def machine() -> dict[str, Any]:
    return {"kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "node": platform.node()}


@dataclass
class _Scheduler:
    heap: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self.lock:
            heapq.heappush(self.heap, (when, next(self.counter), fn))

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.at(time.time() + max(0.0, delay), fn)

    def due(self, now: float) -> list[Callable[[], None]]:
        ready = []
        with self.lock:
            while self.heap and self.heap[0][0] <= now:
                ready.append(heapq.heappop(self.heap)[2])
        return ready

    def next_time(self) -> float | None:
        with self.lock:
            return self.heap[0][0] if self.heap else None


class LabRun:
    def __init__(self, scenario: Scenario, options: LabOptions | None = None) -> None:
        self.scenario = scenario
        self.options = options or LabOptions()
        self.slot: Slot | None = None
        self.paths: LabPaths | None = None
        self.topology: Topology | None = None
        self.store: LabStore | None = None
        self.hosts: Hosts | None = None
        self.records = LabRecords([h.name for h in scenario.cluster.hosts])
        self.scheduler = _Scheduler()
        self.context: FaultContext | None = None
        self.errors: list[str] = []
        self.stalls: list[tuple[float, float]] = []  # (lab time, seconds) the loop stood still
        self.root_mounted = False
        self._previous_term: Any = signal.SIG_DFL

    def say(self, text: str) -> None:
        if self.options.progress is not None:
            self.options.progress(text)

    # ------------------------------------------------------------------ the run
    def run(self) -> LabResult:
        """The whole run (see the module docstring); teardown always."""
        with self:
            self._loop_until(self.records.t0 + self.scenario.duration)
            assert self.hosts is not None
            self.hosts.kill_everything()
            return self._judge()

    def __enter__(self) -> LabRun:
        """Build and start (t = 0); the scenario's events are scheduled. For benchmarks that
        drive the lab themselves: `wait`, `apply`, `writes`, `journal_entries`."""
        reasons = refusals(self.scenario)
        if reasons:
            raise LabRefused(reasons)
        problems = check_machine()
        if problems:
            raise LabRefused(problems)
        self._previous_term = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        try:
            self._build()
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.teardown()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, self._previous_term)

    def wait(self, seconds: float) -> None:
        """Let the lab run (events, fence agents' requests, watchdogs) for `seconds`."""
        self._loop_until(time.time() + seconds)

    def wait_until(self, predicate: Callable[[], bool], timeout: float, step: float = 0.1
                   ) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return True
            self._loop_until(min(deadline, time.time() + step))
        return predicate()

    def apply(self, event: Event) -> None:
        """Apply a fault now (its `at` is ignored)."""
        assert self.context is not None
        self.records.fault(event.do, {k: v for k, v in event.model_dump(
            exclude_defaults=True).items() if k not in ("at", "do")})
        FAULTS[event.do](self.context, event)

    def journal_entries_now(self) -> tuple[list[JournalEntry], dict[int, str]]:
        """The merged journal so far (lab time), and who wrote each entry (by `id`)."""
        return self.journal_entries(until=self.records.now())

    def writes(self) -> list[Write]:
        assert self.paths is not None
        return read_writes(self.paths.disk, self.records.t0)

    def _build(self) -> None:
        self.slot = take_slot()
        root = self.options.workdir or Path(tempfile.gettempdir()) / (
            f"ringfence-lab-{self.slot.number}-{os.getpid()}")
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        netns.run(["mount", "--bind", str(root), str(root)])
        self.root_mounted = True
        netns.run(["mount", "--make-shared", str(root)])
        self.paths = paths = LabPaths(root)
        cluster = self.scenario.cluster
        paths.make([h.name for h in cluster.hosts])
        paths.key.write_bytes(secrets.token_bytes(32))
        paths.key.chmod(0o600)
        write_fence_agent(paths.fence_agent)
        self.say(f"lab slot {self.slot.number}, directory {root}")
        self.topology = topology = Topology(cluster, self.slot.number)
        topology.build(paths.netns)
        for name, node in topology.nodes.items():
            (paths.netns / f"{name}.macs").write_text(
                "".join(f"{network} {nic.mac}\n" for network, nic in node.nics.items()))
        self.store = store = LabStore(topology, cluster.store_members(), root)
        implicit = any(e.do in ("storage_fail", "storage_ok") and e.host is not None
                       and not cluster.host(e.host).datastores for e in self.scenario.events)
        write_cluster_files(cluster, topology, store, paths, implicit_datastore=implicit)
        self.hosts = Hosts(topology, store, paths, self.records, self.scenario.sim.boot_time,
                           self.scheduler.after,
                           migration_bandwidth=self.scenario.sim.migration_bandwidth)
        settings = self.scenario.sim
        topology.loss_all = settings.packet_loss
        delays = {**{(h.name, n): settings.link_jitter for h in cluster.hosts
                     for n in topology.heartbeat}, **self.options.jitter}
        if self.options.loss or topology.loss_all:
            topology.loss.update(self.options.loss)
            topology.set_filters()
        if any(delays.values()):
            self.hosts.jitter = Jitter(topology, delays)
            self.hosts.jitter.install()
        self.context = FaultContext(self.scenario, topology, self.hosts, self.records, paths,
                                    self.scheduler.after)
        store.start_all()
        store.wait_ready()
        self.say(f"store ready ({store.kind}, {len(store.members) or 1} member(s))")

    def _start(self) -> None:
        assert self.hosts is not None
        self.records.t0 = time.time()
        for host in self.hosts.hosts:
            self.hosts.start(host)
        for event in sorted(self.scenario.events, key=lambda e: e.at):
            self.scheduler.at(self.records.t0 + event.at, self._fault(event))
        self.say(f"t=0: {len(self.hosts.hosts)} agents started; {self.scenario.duration:g}s "
                 f"to go")

    def _fault(self, event: Event) -> Callable[[], None]:
        def apply() -> None:
            assert self.context is not None
            late = self.records.now() - event.at
            if late > self.options.tolerance:
                self.errors.append(f"the machine stalled: do: {event.do} at {event.at:g}s was "
                                   f"applied {late:.1f}s late (more than the tolerance)")
            detail = {k: v for k, v in event.model_dump(exclude_defaults=True).items()
                      if k not in ("at", "do")}
            if event.do == "hang":
                detail["watchdog"] = event.watchdog
            self.records.fault(event.do, detail)
            self.say(f"{self.records.now():7.1f}s  FAULT {event.do} "
                     f"{' '.join(f'{k}={v}' for k, v in detail.items())}")
            FAULTS[event.do](self.context, event)

        return apply

    def _loop_until(self, end: float) -> None:
        assert self.hosts is not None
        last = time.monotonic()
        while True:
            now = time.time()
            if now >= end:
                return
            gap = time.monotonic() - last
            last = time.monotonic()
            if gap > STALL:
                self.stalls.append((round(self.records.now() - gap, 1), round(gap, 1)))
            for callback in self.scheduler.due(now):
                try:
                    callback()
                except (LabError, OSError) as exc:
                    self.errors.append(f"at {self.records.now():.1f}s: {exc}")
                    self.say(f"lab error: {exc}")
            try:
                self.hosts.poll()
            except (LabError, OSError) as exc:
                self.errors.append(f"at {self.records.now():.1f}s: {exc}")
            following = self.scheduler.next_time()
            pause = 0.05 if following is None else min(0.05, max(0.0, following - time.time()))
            time.sleep(min(pause, max(0.0, end - time.time())))

    # ------------------------------------------------------------------ judging
    def journal_entries(self, until: float | None = None
                        ) -> tuple[list[JournalEntry], dict[int, str]]:
        assert self.paths is not None
        t0 = self.records.t0
        duration = self.scenario.duration if until is None else until
        raw: list[tuple[float, str, int, dict[str, Any]]] = []
        for host in self.records.hosts:
            for entry in read_journal(self.paths.journal(host)):
                raw.append((float(entry.get("t", 0.0)) - t0, str(entry.get("by")),
                            int(entry.get("seq", 0)), entry))
        entries: list[JournalEntry] = []
        by: dict[int, str] = {}
        for t, writer, _seq, entry in sorted(raw, key=lambda r: (r[0], r[1], r[2])):
            if not 0.0 <= t <= duration:
                continue
            fact = fact_from_fields(str(entry.get("kind")), writer, entry)
            made = JournalEntry(round(t, 3), fact, str(entry.get("text", "")))
            entries.append(made)
            by[id(made)] = writer
        for lab_entry in self.records.entries:
            if 0.0 <= lab_entry.t <= duration:
                entries.append(JournalEntry(round(lab_entry.t, 3), lab_entry.fact,
                                            render(lab_entry.fact)))
        entries.sort(key=lambda e: e.t)
        return entries, by

    def _judge(self) -> LabResult:
        assert self.paths is not None
        duration = self.scenario.duration
        writes = read_writes(self.paths.disk, self.records.t0)
        runs, starts = runs_of(writes, duration)
        entries, by = self.journal_entries()
        world = LabWorld(runs, entries, alerts_of(entries), list(self.records.faults), starts,
                         build_host_states(self.records, entries, by))
        lab = {"slot": self.slot.number if self.slot else None,
               "tolerance_s": self.options.tolerance,
               "boot_time_s": self.scenario.sim.boot_time,
               "store": self.store.kind if self.store else None,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                        time.localtime(self.records.t0)),
               "machine": machine(),
               "workdir": str(self.paths.root) if self.options.keep else None,
               "errors": list(self.errors),
               "stalls": [{"t": t, "s": s} for t, s in self.stalls]}
        return judge_run(self.scenario, world, self.options.tolerance, lab)

    # ------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        """Undo everything this run made; safe to call at any stage, more than once."""
        if self.hosts is not None:
            self.hosts.kill_everything()
        if self.context is not None:
            for operator in self.context.operators:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    operator.wait(timeout=5)
            for path in sorted(self.context.storage_mounts, reverse=True):
                netns.run(["umount", "-l", str(path)], check=False)
            self.context.storage_mounts.clear()
        if self.topology is not None:
            self.topology.teardown()
        if self.paths is not None and self.root_mounted:
            netns.run(["umount", "-l", str(self.paths.root)], check=False)
            self.root_mounted = False
        if self.paths is not None and not self.options.keep:
            shutil.rmtree(self.paths.root, ignore_errors=True)
        if self.slot is not None:
            self.slot.release()
            self.slot = None
