"""A lab host's life: boot, power off, hang and resume, a clean stop, and the watchdog that
resets it. Every host is one network namespace; its "power" is whether processes run in it.

* **boot**: after the scenario's ``sim.boot_time`` (as in the simulator), the NICs come up
  (renamed first if `rename_nics` asked for it), the host's etcd member starts (if it is one),
  then ``ringfence agent`` with the process watchdog, inside the namespace (``ip netns exec``,
  so ``/sys/class/net`` is the host's own).
* **power off**: every process of the namespace is killed (`netns.kill_all`) and the host's
  NICs go down. A pending boot is cancelled (each boot has a generation number).
* **hang**: SIGSTOP to every process of the namespace (agent, VMs, etcd member, a running
  fence agent) except the watchdog supervisor, which is hardware: it keeps counting and
  resets the host. ``watchdog: frozen`` stops it too. **resume**: SIGCONT to all of them.
* **clean stop** (`reboot`, `shutdown`): SIGTERM to the agent, which applies the shutdown
  policy itself (the lab marks a reboot in a file the agent checks, see
  `ringfence.agent.runtime.host_is_rebooting`); when it has exited the host powers off, and a
  reboot boots again.
* **watchdog reset**: the supervisor kills the agent and its VMs and says so on the agent's
  stderr; the lab then kills what is left (the etcd member), journals ``watchdog_reset`` and
  boots the host, as the reset of a real machine would.
* **fencing**: the fence agent (`ringfence.lab.fence_agent`) kills the namespace itself and
  leaves files in ``power/``; `Hosts.poll` turns them into power facts and boots.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ringfence.lab import netns
from ringfence.lab.jitter import Jitter
from ringfence.lab.paths import LabPaths
from ringfence.lab.records import LabRecords
from ringfence.lab.store_members import LabStore
from ringfence.lab.topology import Topology

WATCHDOG_MODULE = "ringfence.fence.process_watchdog"
VM_MODULE = "ringfence.hypervisor.process_vm"
WATCHDOG_FIRED = "watchdog: not petted"
STOP_TIMEOUT = 160.0  # the agent's own bound (150 s) and a margin
LAB_TOOLS = frozenset({"ip", "nft", "mount", "umount"})


@dataclass
class LabHost:
    name: str
    ns: str
    inode: int
    agent: subprocess.Popen[bytes] | None = None
    boot_gen: int = 0
    rename_pending: bool = False
    log_offset: int = 0
    off_seen: float = 0.0  # mtime of the last power/<host>.off we acted on
    stopping: bool = False  # a clean stop is under way
    stalled_until: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


Schedule = Callable[[float, Callable[[], None]], None]


class Hosts:
    def __init__(self, topology: Topology, store: LabStore, paths: LabPaths,
                 records: LabRecords, boot_time: float, schedule: Schedule, *,
                 migration_bandwidth: int | None = None) -> None:
        self.topology = topology
        # The scenario's `sim.migration_bandwidth`: process VMs' migrations take as long to
        # "copy" as the simulator's, so that a fault can land during one.
        self.migration_bandwidth = migration_bandwidth
        self.store = store
        self.paths = paths
        self.records = records
        self.boot_time = boot_time
        self.schedule = schedule  # (delay in seconds, callback): run later on the lab's loop
        self.hosts = {
            name: LabHost(name, node.ns, netns.inode(node.ns))
            for name, node in topology.nodes.items() if node.kind == "host"}
        self.witness_inodes = {name: netns.inode(node.ns)
                               for name, node in topology.nodes.items()
                               if node.kind == "witness"}
        self.lock = threading.RLock()
        self.jitter: Jitter | None = None
        self.relays: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ starting
    def agent_argv(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[host].ns, sys.executable, "-m",
                "ringfence.cli", "agent", "--config", str(self.paths.config(host)),
                "--host", host, "--state-dir", str(self.paths.state(host)),
                "--watchdog", "process", "--disk-file", str(self.paths.disk),
                # One parent for every host's process VMs, so that a migrated VM's state is
                # where the target's agent looks (the lab shares one file system), and its
                # process starts in the target's namespace: it dies with the target, not
                # with the source, and the target's guest check reaches it.
                "--vm-dir", str(self.paths.root / "vms"),
                "--vm-launcher", self.topology.launcher_template(),
                *(["--migration-bandwidth", str(self.migration_bandwidth)]
                  if self.migration_bandwidth else [])]

    def start_agent(self, host: str) -> None:
        spec = self.hosts[host]
        env = dict(os.environ)
        env["RINGFENCE_EDAC_DIR"] = str(self.paths.edac(host))
        env["RINGFENCE_REBOOT_MARKER"] = str(self.paths.reboot_marker(host))
        self.paths.reboot_marker(host).unlink(missing_ok=True)
        log = self.paths.agent_log(host)
        with log.open("ab") as out:
            spec.agent = subprocess.Popen(self.agent_argv(host), stdout=out, stderr=out,
                                          stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=True)
        spec.log_offset = log.stat().st_size if log.exists() else 0

    def start(self, host: str) -> None:
        """The host's software, in boot order: its etcd member, its heartbeat relays (with
        jitter), then its agent."""
        self.store.start(host)
        if self.jitter is not None:
            for relay in self.jitter.start(host, self.paths.host(host) / "relay.log"):
                self.relays.append(relay)
        self.start_agent(host)
        self.records.set_power(host, "up")

    # ------------------------------------------------------------------ power
    def power_off(self, host: str, why: str) -> None:
        with self.lock:
            spec = self.hosts[host]
            spec.boot_gen += 1
            spec.stopping = False
            netns.kill_all(spec.inode)
            self._reap(spec)
            self.topology.set_powered(host, False)
            self.records.set_power(host, "off")

    def power_on(self, host: str) -> None:
        """Boot after ``boot_time`` (nothing if the host is not off)."""
        with self.lock:
            spec = self.hosts[host]
            if self.records.power_at(host) != "off":
                return
            spec.boot_gen += 1
            generation = spec.boot_gen
            (self.paths.power / f"{host}.off").unlink(missing_ok=True)
            self.records.set_power(host, "booting")
        self.schedule(self.boot_time, lambda: self._booted(host, generation))

    def _booted(self, host: str, generation: int) -> None:
        with self.lock:
            spec = self.hosts[host]
            if spec.boot_gen != generation or self.records.power_at(host) != "booting":
                return  # powered off (or fenced) while it booted
            if spec.rename_pending:
                spec.rename_pending = False
                self.topology.rename(host)
            self.topology.set_powered(host, True)
            self.start(host)

    def _reap(self, spec: LabHost) -> None:
        for relay in [r for r in self.relays if r.poll() is not None]:
            self.relays.remove(relay)
        if spec.agent is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spec.agent.wait(timeout=5)
            spec.agent = None
        member = self.store.members.get(spec.name)
        if member is not None:
            member.reap()

    # ------------------------------------------------------------------ hang
    def hang(self, host: str, *, frozen: bool) -> bool:
        with self.lock:
            if self.records.power_at(host) != "up":
                return False
            spec = self.hosts[host]
            def keep(pid: int) -> bool:
                words = netns.cmdline(pid)
                if words and Path(words[0]).name in LAB_TOOLS:
                    return False  # the lab's own `ip` or `nft` passing through the namespace
                return frozen or WATCHDOG_MODULE not in words

            netns.signal_pids(netns.alive_in(spec.inode, keep), signal.SIGSTOP)
            spec.extra["frozen"] = frozen
            self.records.set_power(host, "hung")
            return True

    def resume(self, host: str) -> bool:
        with self.lock:
            if self.records.power_at(host) != "hung":
                return False
            spec = self.hosts[host]
            netns.signal_pids(netns.alive_in(spec.inode), signal.SIGCONT)
            self.records.set_power(host, "up")
            return True

    def stall_agent(self, host: str, seconds: float) -> bool:
        """SIGSTOP of the agent process alone; SIGCONT after `seconds`."""
        with self.lock:
            spec = self.hosts[host]
            if self.records.power_at(host) != "up" or spec.agent is None:
                return False
            agent = spec.agent
            netns.signal_pids([agent.pid], signal.SIGSTOP)

        def wake() -> None:
            if spec.agent is agent and agent.poll() is None:
                netns.signal_pids([agent.pid], signal.SIGCONT)

        self.schedule(seconds, wake)
        return True

    # ------------------------------------------------------------------ clean stop
    def clean_stop(self, host: str, *, reboot: bool) -> None:
        """`reboot` / `shutdown`: the agent's own SIGTERM, then power off (and on)."""
        with self.lock:
            spec = self.hosts[host]
            power = self.records.power_at(host)
            if power == "off":
                return
            if power != "up" or spec.agent is None or spec.agent.poll() is not None:
                self.power_off(host, "reboot" if reboot else "shutdown")  # hung or booting
                if reboot:
                    self.power_on(host)
                return
            if reboot:
                self.paths.reboot_marker(host).write_text("reboot\n")
            spec.stopping = True
            agent, generation = spec.agent, spec.boot_gen
            netns.signal_pids([agent.pid], signal.SIGTERM)
        threading.Thread(target=self._finish_stop, args=(host, agent, generation, reboot),
                         name=f"stop-{host}", daemon=True).start()

    def _finish_stop(self, host: str, agent: subprocess.Popen[bytes], generation: int,
                     reboot: bool) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.wait(timeout=STOP_TIMEOUT)

        def power_cycle() -> None:
            with self.lock:
                if self.hosts[host].boot_gen != generation:
                    return  # fenced, reset or powered off meanwhile
                self.power_off(host, "reboot" if reboot else "shutdown")
                if reboot:
                    self.power_on(host)

        self.schedule(0.0, power_cycle)

    # ------------------------------------------------------------------ what happened
    def poll(self) -> None:
        """Power facts from the fence agent's files, and watchdog resets (called often)."""
        with self.lock:
            for host, spec in self.hosts.items():
                self._poll_power_files(host, spec)
                self._poll_watchdog(host, spec)

    def _poll_power_files(self, host: str, spec: LabHost) -> None:
        off = self.paths.power / f"{host}.off"
        try:
            mtime = off.stat().st_mtime
        except OSError:
            mtime = 0.0
        if mtime and mtime != spec.off_seen:
            spec.off_seen = mtime
            if self.records.power_at(host) != "off":
                spec.boot_gen += 1  # a boot under way is cancelled, as by a power cut
                spec.stopping = False
                netns.kill_all(spec.inode)
                self._reap(spec)
                self.topology.set_powered(host, False)
                self.records.set_power(host, "off", t=mtime - self.records.t0)
        on = self.paths.power / f"{host}.on"
        if on.exists():
            on.unlink(missing_ok=True)
            self.power_on(host)

    def _poll_watchdog(self, host: str, spec: LabHost) -> None:
        log = self.paths.agent_log(host)
        try:
            size = log.stat().st_size
        except OSError:
            return
        if size <= spec.log_offset:
            return
        with log.open("rb") as handle:
            handle.seek(spec.log_offset)
            new = handle.read(size - spec.log_offset)
        spec.log_offset = size
        fired = next((line for line in new.decode(errors="replace").splitlines()
                      if line.startswith(WATCHDOG_FIRED)), None)
        if fired is None or self.records.power_at(host) == "off":
            return
        died = self.records.now() - 1.0  # the supervisor speaks after its 1 s sweep
        self.records.journal("watchdog_reset", host=host, t=died, detail=fired)
        self.power_off(host, "watchdog")
        self.power_on(host)

    # ------------------------------------------------------------------ VMs
    def vm_pids(self, host: str, vm: str | None = None) -> list[int]:
        spec = self.hosts[host]

        def is_vm(pid: int) -> bool:
            words = netns.cmdline(pid)
            if VM_MODULE not in words:
                return False
            return vm is None or ("--vm" in words and words[words.index("--vm") + 1] == vm)

        return netns.alive_in(spec.inode, is_vm)

    # ------------------------------------------------------------------ witnesses
    def witness_down(self, witness: str) -> None:
        netns.kill_all(self.witness_inodes[witness])
        member = self.store.members.get(witness)
        if member is not None:
            member.reap()
        self.topology.set_powered(witness, False)

    def witness_up(self, witness: str) -> None:
        self.topology.set_powered(witness, True)
        self.store.start(witness)

    # ------------------------------------------------------------------ the end
    def kill_everything(self) -> None:
        """Teardown: every process of every lab namespace, hosts and witnesses."""
        inodes = [spec.inode for spec in self.hosts.values()]
        inodes += list(self.witness_inodes.values())
        for ns_inode in inodes:
            with contextlib.suppress(netns.LabError):
                netns.kill_all(ns_inode)
        for spec in self.hosts.values():
            self._reap(spec)
        for member in self.store.members.values():
            member.reap()
        for relay in self.relays:
            with contextlib.suppress(subprocess.TimeoutExpired):
                relay.wait(timeout=5)
        self.relays.clear()


def write_fence_agent(path: Path) -> None:
    path.write_text(f"#!/bin/sh\nexec {sys.executable} -m ringfence.lab.fence_agent\n")
    path.chmod(0o755)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
