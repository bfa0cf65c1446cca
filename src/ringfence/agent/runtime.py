"""`ringfence agent`: the real runtime around the same `Agent` the simulator runs.

It builds the real parts (monotonic clock, UDP heartbeats, the configured store, hypervisor,
watchdog, fence agents, probes, a local journal and local state) and runs the agent's three
cycles on a fixed grid of `heartbeat_interval` (`origin + k x interval`, skipping the slots a
slow cycle overran), each in a thread of its own, as the simulator runs them
(`sim.cycles`): heartbeats and the watchdog pet (`Agent.beat`), the host lease (its
registration and renewals, `Agent.keep_leases`) and decisions (`Agent.tick`). The
cycles share the agent through the gate (`agent.gate`): each lets it go while it waits in a
store or hypervisor call, so a slow store delays decisions, never a heartbeat, a renewal or a
pet. The asyncio loop handles signals. SIGTERM or SIGINT: a clean stop (the shutdown policy
applies: VMs are stopped or drained, the store is told, the watchdog is closed), bounded by
`STOP_TIMEOUT`; a second signal stops at once.

With an `api:` section in the cluster file the agent also serves the API, dashboard and
metrics (`start_api`, `ringfence.api`) from a thread of its own.

Failure semantics: a missing address, port, key or watchdog is a start-up error that names the
field (exit 2), never a traceback. Without a watchdog the agent refuses to run HA unless
`--unsafe-no-watchdog` is given, and then says so in its journal at every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringfence.agent.gate import Gate, GatedHypervisor, GatedStore
from ringfence.agent.journal import FileJournal, JournalAlerts, journal_file
from ringfence.agent.transport import DEFAULT_PORT, LinkEndpoints, TransportError, UdpTransport
from ringfence.agent.wakeup import Nudge, pause, relay_changes, request_stop
from ringfence.alerts.watch import checks_of
from ringfence.alerts.worker import AlertWorker, RoutedAlerts
from ringfence.config import ClusterConfig
from ringfence.core import leases
from ringfence.core.agent import Agent, AgentMode, AgentParts
from ringfence.core.ports import GuestChecks, LocalState, Probes, StoreWatch
from ringfence.core.topology import Topology
from ringfence.errors import ConfigError
from ringfence.fence.base import FenceAgent, Watchdog
from ringfence.hypervisor.base import Hypervisor, HypervisorError
from ringfence.listing import Stamp, names_in
from ringfence.store.base import Compare, Put, Store, StoreUnavailable

if TYPE_CHECKING:
    from ringfence.api.heartbeats import HeartbeatCounters

STOP_TIMEOUT = 150.0


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()


class NoWatchdog:
    """`--unsafe-no-watchdog`: nothing resets a hung host. Journaled loudly at start."""

    def arm(self, timeout: float) -> None:
        return None

    def pet(self) -> None:
        return None

    def disarm(self) -> None:
        return None


@dataclass
class AgentOptions:
    state_dir: Path
    watchdog: str = "auto"  # auto | linux | process | none
    unsafe_no_watchdog: bool = False
    log_json: bool = False
    disk_file: Path | None = None  # the `process` hypervisor's shared "disk"
    # The parent of every host's process-VM state directory (default STATE_DIR/vms): hosts
    # that live-migrate process VMs to each other must share it.
    vm_dir: Path | None = None
    migration_delay: float = 0.0  # the process hypervisor's migration "copy" (tests, demo)
    # How the process hypervisor starts a migrated VM on another host (`--vm-launcher`, the
    # lab's ``ip netns exec NS-{host}``); None: every host is this machine.
    vm_launcher: Callable[[str], list[str]] | None = None
    # The process hypervisor's migrations copy each VM's memory at this many bytes a second.
    migration_bandwidth: int | None = None
    unsafe_migration: bool = False  # libvirt: VIR_MIGRATE_UNSAFE (the QEMU demo's local disks)
    bootstrap: bool = False  # may create the cluster identity in an empty store
    forget_store: bool = False  # forget the remembered store identity (no VM may run)
    on_status: Callable[[str], None] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    gate: Gate = field(default_factory=Gate)
    nudge: Nudge = field(default_factory=Nudge)  # wakes the decision cycle (`agent.wakeup`)


def read_key(config: ClusterConfig) -> bytes:
    if config.key_file is None:
        raise ConfigError("the heartbeat key is required to run an agent (a file "
                          "with at least 32 random bytes)", path="key_file")
    from ringfence.secrets import check_secret_file

    check_secret_file(config.key_file, "key_file")  # readable by others: refused (exit 2)
    try:
        key = Path(config.key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"can not read {config.key_file}: {exc.strerror}",
                          path="key_file") from None
    if len(key) < 32:
        raise ConfigError(f"{config.key_file} holds {len(key)} bytes; at least 32 "
                          f"random bytes are needed", path="key_file")
    return key


def heartbeat_links(config: ClusterConfig) -> list[LinkEndpoints]:
    """Where every host listens on every heartbeat network (from `interfaces.*.address` and
    the network's `port`)."""
    topology = Topology.from_config(config)
    links = []
    for j, name in enumerate(topology.links):
        port = config.network(name).port or DEFAULT_PORT + j
        addresses = []
        for i, host in enumerate(config.hosts):
            interface = host.interfaces.get(name)
            if interface is None or not interface.address:
                raise ConfigError(
                    f"hosts[{i}].interfaces.{name}.address: the agent needs {host.name}'s "
                    f"address on heartbeat network {name}", path=f"hosts[{i}].interfaces")
            addresses.append((interface.address, port))
        links.append(LinkEndpoints(name, addresses))
    return links


def domain_xml_source(config: ClusterConfig, store: Store) -> Callable[[str], str]:
    """Where a libvirt host finds a VM's domain XML: in the store (`vms/<vm>/domain`), so that
    every host defines the VM alike; a host that has the cluster file's `domain_xml_file`
    publishes it there the first time it is needed (compare-and-set: the first copy wins)."""
    files = {vm.name: vm.domain_xml_file for vm in config.vms}

    def domain_xml(vm: str) -> str:
        key = f"{leases.VMS_PREFIX}{vm}/domain"
        with contextlib.suppress(StoreUnavailable):
            kv = store.get(key)
            if kv is not None and isinstance(kv.value.get("xml"), str):
                return str(kv.value["xml"])
        path = files.get(vm)
        if path is None:
            raise HypervisorError(f"no domain XML for {vm}: not in the store, and the cluster "
                                  f"file gives no domain_xml_file")
        try:
            xml = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise HypervisorError(f"no domain XML for {vm}: {path}: {exc.strerror}") from None
        with contextlib.suppress(StoreUnavailable):
            store.txn([Compare.absent(key)], [Put(key, {"xml": xml, "from": path})])
        return xml

    return domain_xml


def process_vm_dir(options: AgentOptions, host: str) -> Path:
    """Where the process hypervisor of `host` keeps its VMs' state (`--vm-dir`/HOST)."""
    return (options.vm_dir or options.state_dir / "vms") / host


def _copy_time(config: ClusterConfig, bandwidth: int | None
               ) -> Callable[[str], float] | None:
    """How long a process VM's migration "copies" its memory (`--migration-bandwidth`)."""
    if bandwidth is None:
        return None
    memory = {vm.name: vm.memory for vm in config.vms}
    return lambda vm: memory.get(vm, 0) / bandwidth


def _hypervisor(config: ClusterConfig, host: str, options: AgentOptions, store: Store
                ) -> tuple[Hypervisor, GuestChecks | None]:
    spec = config.host(host)
    kind = spec.hypervisor or "process"
    if kind == "process":
        from ringfence.hypervisor.process import ProcessGuestChecks, ProcessHypervisor

        state = process_vm_dir(options, host)
        disk = options.disk_file or options.state_dir / "disk.jsonl"
        return (ProcessHypervisor(host, state, disk, migration_delay=options.migration_delay,
                                  copy_time=_copy_time(config, options.migration_bandwidth),
                                  launcher=options.vm_launcher, on_job_done=options.nudge),
                ProcessGuestChecks(state))
    try:
        from ringfence.hypervisor.libvirt import LibvirtHypervisor
    except ModuleNotFoundError as exc:  # libvirt-python is an optional extra
        if exc.name != "libvirt":
            raise
        from ringfence.errors import libvirt_missing

        index = [h.name for h in config.hosts].index(host)
        raise ConfigError(libvirt_missing(kind, sys.executable),
                          path=f"hosts[{index}].hypervisor") from None
    from ringfence.probes.guest import LibvirtGuestAgent, NetworkGuestChecks

    return (LibvirtHypervisor(kind, domain_xml_source(config, store),
                              target_uri=migration_target_uri(config),
                              unsafe_migration=options.unsafe_migration,
                              on_job_done=options.nudge),
            NetworkGuestChecks(config, agent=LibvirtGuestAgent(kind).answers))


def migration_target_uri(config: ClusterConfig) -> Callable[[str], str]:
    """Where this host's libvirtd sends a live migration to host `target`: the target's own
    `hypervisor` URI from the cluster file when it names a remote host (``qemu+tcp://ADDR/
    system``, ``qemu+ssh://...``: the source libvirtd connects there), else the target's
    system libvirtd over ssh by its name (`ssh_uri`)."""
    from urllib.parse import urlsplit

    from ringfence.hypervisor.libvirt import ssh_uri

    def uri(target: str) -> str:
        try:
            spec = config.host(target)
        except KeyError:
            spec = None
        given = spec.hypervisor if spec is not None else None
        if given and given != "process" and urlsplit(given).hostname:
            return given
        return ssh_uri(target)

    return uri


def _notify_ready() -> None:
    """Tell systemd (Type=notify) that the agent runs; nothing without $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    import socket

    target = "\0" + address[1:] if address.startswith("@") else address
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", target)


def _service_watchdog(config: ClusterConfig, host: str, journal: FileJournal
                      ) -> Watchdog | None:
    """systemd's per-service watchdog (WatchdogSec=), petted by the agent's heartbeat cycle
    beside the hardware watchdog (and, while the agent waits to join, on its own), so that
    systemd kills an agent that stopped cycling. Not a self-fence by itself: /dev/watchdog is.
    None when not run by systemd with a watchdog; failing to arm it is journaled."""
    if not (os.environ.get("NOTIFY_SOCKET") and os.environ.get("WATCHDOG_USEC")):
        return None
    from ringfence.fence.watchdog import SystemdWatchdog

    service = SystemdWatchdog()
    try:
        service.arm(config.timing.watchdog_timeout)
    except OSError as exc:
        journal.record("watchdog_missing", host=host,
                       reason=f"systemd's service watchdog not used: {exc}")
        return None
    return service


def _watchdog(host: str, options: AgentOptions, journal: FileJournal) -> Watchdog:
    choice = "none" if options.unsafe_no_watchdog else options.watchdog
    if choice == "auto":
        choice = "linux" if Path("/dev/watchdog").exists() else "missing"
    if choice == "missing":
        raise ConfigError("no watchdog: /dev/watchdog does not exist. Load a watchdog driver "
                          "(softdog at the least), or pass --unsafe-no-watchdog to run without "
                          "self-fencing (a hung host could then run VMs after they moved)")
    if choice == "none":
        journal.record("watchdog_missing", host=host,
                       reason="running WITHOUT a watchdog (--unsafe-no-watchdog): a hung host "
                              "can not be reset; recovery of its VMs is unsafe")
        return NoWatchdog()
    if choice == "linux":
        from ringfence.fence.watchdog import LinuxWatchdog

        return LinuxWatchdog()
    from ringfence.fence.watchdog import ProcessWatchdog

    return ProcessWatchdog(agent_pid=os.getpid(), vm_dir=process_vm_dir(options, host),
                           beat_file=options.state_dir / f"{host}.beat")


def _fence_agents(config: ClusterConfig, nudge: Nudge) -> dict[str, FenceAgent]:
    from ringfence.fence.runner import FenceAgentRunner

    agents: dict[str, FenceAgent] = {}
    for target, spec in sorted(config.fencing.items()):
        agents[target] = FenceAgentRunner(target, spec.agent, spec.params,
                                          timeout=config.timing.fence_timeout, retries=2,
                                          on_done=nudge)
    return agents


def _probes(config: ClusterConfig, host: str) -> Probes | None:
    spec = config.host(host)
    if not any(i.mac for i in spec.interfaces.values()) and not spec.datastores:
        return None  # nothing to identify or probe (the demo on loopback)
    from ringfence.probes.host import LinuxProbes

    return LinuxProbes(config, host)


def build_agent(config: ClusterConfig, host: str, options: AgentOptions) -> Agent:
    """The real parts, wired into the same `Agent` the simulator runs."""
    names = [h.name for h in config.hosts]
    if host not in names:
        raise ConfigError(f"--host: {host!r} is not a host of cluster {config.name}; its hosts "
                          f"are {', '.join(names)}")
    from ringfence.agent.local_state import FileLocalState
    from ringfence.store.factory import open_store

    options.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # journals, state: private
    journal = FileJournal(journal_file(options.state_dir, host), host,
                          echo_json=options.log_json)
    key = read_key(config)
    links = heartbeat_links(config)
    try:
        transport = UdpTransport(key, [h.name for h in config.hosts].index(host), links,
                                 len(config.hosts), cluster=config.name,
                                 epoch_file=options.state_dir / f"epoch-{host}",
                                 arrival_cap=config.timing.heartbeat_interval)
    except TransportError as exc:
        raise ConfigError(f"{exc.strerror or exc}", path="networks") from None
    options.closers.append(transport.close)
    for why in transport.down.values():
        journal.record("heartbeat_unbound", host=host, reason=why)
    # Only a host that may bootstrap the cluster creates a SQLite store file; the others
    # wait for it (a missing file is an unreachable store, never a new empty one).
    bootstrap = options.bootstrap or config.store.bootstrap == host
    store = open_store(config, host=host, create=bootstrap)
    journal.cluster = config.name
    hypervisor, checks = _hypervisor(config, host, options, store)
    local_state = FileLocalState(options.state_dir / f"local-{host}")
    if options.forget_store:
        _forget_store(host, hypervisor, local_state, journal)
    gate = options.gate
    alert_worker = (AlertWorker(config.alerts, cluster=config.name, host=host, journal=journal,
                                checked_vms=[v.name for v in config.vms if v.verify is not None],
                                checks=checks_of(config, host=host))
                    if config.alerts else None)
    parts = AgentParts(
        store_watch=_store_watch(store, options),
        clock=MonotonicClock(),
        store=GatedStore(store, gate),
        lease_store=GatedStore(open_store(config, host=host, create=bootstrap), gate),
        hypervisor=GatedHypervisor(hypervisor, gate),
        watchdog=_watchdog(host, options, journal),
        transport=transport,
        journal=journal,
        alerts=RoutedAlerts(journal, alert_worker) if alert_worker else JournalAlerts(journal),
        fence_agents=_fence_agents(config, options.nudge),
        probes=_probes(config, host),
        guest_checks=checks,
        local_state=local_state,
        new_id=lambda: uuid.uuid4().hex,
        service_watchdog=_service_watchdog(config, host, journal),
    )
    agent = Agent(config, host, parts, bootstrap=bootstrap)
    # The journal's copy in the store: its own connection (a slow mirror write never delays
    # a decision), and only into the store this host joined.
    from ringfence.journal.store_mirror import StoreMirror
    from ringfence.store.identity import IdentifiedStore

    mirror_store = open_store(config, host=host)
    journal.mirror = StoreMirror(IdentifiedStore(mirror_store, agent.identity, strict=True),
                                 host, boot=int(time.time()))
    options.closers.append(journal.mirror.close)
    if alert_worker is not None:  # its own store connection, like the mirror's
        alert_worker.start(IdentifiedStore(open_store(config, host=host), agent.identity,
                                           strict=True), lambda: agent.manager.is_leader)
        options.closers.append(alert_worker.close)
    return agent


def _store_watch(store: Store, options: AgentOptions) -> StoreWatch | None:
    """etcd: a watch stream that says when to re-read the store and wakes the decision cycle
    when another host wrote (`store.etcd_watch`). SQLite is a file on this machine: asking it
    at every cycle is cheap, so its agents go on doing that."""
    from ringfence.store.etcd import EtcdStore

    if not isinstance(store, EtcdStore):
        return None
    from ringfence.store.etcd_watch import EtcdWatch

    watch = EtcdWatch(store, options.nudge).start()
    options.closers.append(watch.close)
    return watch


def _forget_store(host: str, hypervisor: Hypervisor, local_state: LocalState,
                  journal: FileJournal) -> None:
    """`--forget-store`: drop the remembered store identity, so that this host can join a
    store that was deliberately re-bootstrapped. Refused while VMs run here (they belong to
    the store it remembers)."""
    from ringfence.core.identity import IDENTITY_MEMORY, Remembered

    try:
        running = sorted(hypervisor.list_running())
    except HypervisorError as exc:
        raise ConfigError(f"--forget-store: can not ask the hypervisor whether VMs run here "
                          f"({exc}); refusing to forget the store") from None
    if running:
        raise ConfigError(f"--forget-store: VMs run on {host} ({', '.join(running)}); they "
                          f"belong to the store it remembers. Stop them first")
    old = Remembered.parse(local_state.get(IDENTITY_MEMORY))
    seen = max(old.generation_seen, old.identity.generation if old.identity else 0)
    local_state.put(IDENTITY_MEMORY, Remembered(None, 0, seen).value())
    journal.record("store_forgotten", host=host,
                   detail=old.identity.short() if old.identity else None)


def _on_grid(origin: float, interval: float, count: int) -> tuple[int, float]:
    """The next slot of the grid after now, and how long until it."""
    count = max(count + 1, int((time.monotonic() - origin) / interval) + 1)
    return count, max(0.0, origin + count * interval - time.monotonic())


def _beat_loop(agent: Agent, gate: Gate, origin: float, halt: threading.Event,
               nudge: Nudge) -> None:
    """The heartbeat cycle's thread: never waits for the store. A peer that changed state
    wakes the decision cycle (`agent.wakeup`)."""
    interval, count = agent.timing.heartbeat_interval, 0
    while not halt.is_set():
        with gate.held():
            agent.beat()
            news = agent.take_news()
        if news:
            nudge()
        count, delay = _on_grid(origin, interval, count)
        halt.wait(delay)


def _lease_loop(agent: Agent, gate: Gate, origin: float, halt: threading.Event) -> None:
    """The lease cycle's thread: a renewal when it is due, over its own store connection. It
    sleeps through the slots before the next renewal (only this thread moves it), waking on
    the first slot at or after it, as it would have polling every slot: an idle agent's lease
    thread wakes once per renewal instead of five times a second."""
    interval, count = agent.timing.heartbeat_interval, 0
    while not halt.is_set():
        with gate.held():
            if time.monotonic() >= agent.next_lease_due() - 1e-6:
                agent.keep_leases()
            due = agent.next_lease_due()
        count, delay = _on_grid(origin, interval, count)
        if math.isfinite(due):
            slot = max(count, math.ceil((due - 1e-6 - origin) / interval))
            count, delay = slot, max(0.0, origin + slot * interval - time.monotonic())
        halt.wait(delay)


async def _drive(agent: Agent, options: AgentOptions) -> int:
    """The event loop's part: the signals, while the cycles run in threads of their own. It
    has nothing to do between signals (see `agent.wakeup` for why: every wake costs CPU)."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    wake = threading.Event()  # ends the decision cycle's pause: news (`options.nudge`), a stop
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        request_stop(stop, wake)
        if interrupts > 1:
            os._exit(1)  # a second signal: stop now, whatever runs

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    origin = time.monotonic()
    halt = threading.Event()
    helpers = [threading.Thread(target=_beat_loop, args=(agent, options.gate, origin, halt,
                                                         options.nudge),
                                name="ringfence-beat", daemon=True),
               threading.Thread(target=_lease_loop, args=(agent, options.gate, origin, halt),
                                name="ringfence-lease", daemon=True)]
    options.nudge.bind(wake)
    changed = getattr(agent.parts.hypervisor, "changed", None)
    if isinstance(changed, threading.Event):
        helpers.append(threading.Thread(target=relay_changes,
                                        args=(changed, options.nudge, halt),
                                        name="ringfence-vm-events", daemon=True))
    for helper in helpers:
        helper.start()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ringfence-cycle") as executor:
            try:
                await loop.run_in_executor(executor, _decide_loop, agent, options, origin,
                                           Pacing(stop, wake, halt))
            finally:
                wake.set()  # if this was cancelled: `halt` (below) ends the cycle's thread
                halt.set()
    finally:
        options.nudge.unbind()
        halt.set()
        for helper in helpers:
            helper.join(timeout=2 * agent.timing.heartbeat_interval + 1.0)
    return 0


@dataclass(frozen=True)
class Pacing:
    """What the decision cycle's thread waits on: `stop` (a signal: the shutdown policy runs),
    `wake` (news, or a stop: ends its pause) and `halt` (the runtime ends: it returns at once,
    without a shutdown)."""

    stop: threading.Event
    wake: threading.Event
    halt: threading.Event


def _decide_loop(agent: Agent, options: AgentOptions, origin: float, pacing: Pacing) -> None:
    """The decision cycle's thread: a cycle at each slot of the grid, or sooner when woken
    (`agent.wakeup`), until a stop; then the shutdown policy. One thread from slot to slot:
    handing each cycle to a worker and back cost more CPU than an idle cycle's work (issue 17)."""
    gate = options.gate
    inbox = OperatorInbox(options.state_dir)
    interval = agent.timing.heartbeat_interval
    count = 0
    chained = False  # this cycle was run at once for the manager's own writes
    while not pacing.stop.is_set() and not pacing.halt.is_set():
        started = time.monotonic()
        for request in inbox.take():
            with gate.held():
                _force(agent, request)
        with gate.held():
            status = agent.tick()
        if options.on_status is not None:
            options.on_status(status)
        # The manager's own writes: one more cycle at once, never a chain of them.
        chained = agent.take_own_writes() and not chained
        if chained:
            pacing.wake.set()
        count, delay = _on_grid(origin, interval, count)
        if pause(pacing.stop, pacing.wake, delay, started):
            count -= 1  # woken early: the slot waited for is still the next one
    if not pacing.halt.is_set():
        _shut_down(agent, gate, interval)


def _shut_down(agent: Agent, gate: Gate, interval: float) -> None:
    """The shutdown policy (`Agent.begin_shutdown`), then cycles until the agent has stopped,
    bounded by `STOP_TIMEOUT`."""
    reboot = host_is_rebooting()
    with gate.held():
        done = agent.begin_shutdown(reboot=reboot)
    deadline = time.monotonic() + STOP_TIMEOUT
    while not done and agent.mode != AgentMode.STOPPED and time.monotonic() < deadline:
        with gate.held():
            agent.tick()
        time.sleep(interval)


def host_is_rebooting() -> bool:
    """Is the agent being stopped because the host reboots (systemd has reboot.target queued),
    rather than shut down or the service stopped? The shutdown policy treats the two apart
    (`conditional`: a rebooting host keeps its VMs). Without systemd: not a reboot, unless the
    file that $RINGFENCE_REBOOT_MARKER names exists (an init system without systemd's job list
    says so that way; the lab does)."""
    import shutil
    import subprocess

    marker = os.environ.get("RINGFENCE_REBOOT_MARKER")
    if marker and Path(marker).exists():
        return True

    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return False
    try:
        jobs = subprocess.run([systemctl, "list-jobs", "--no-legend", "--no-pager"],
                              capture_output=True, text=True, timeout=2, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return reboot_queued(jobs)


def reboot_queued(jobs: str) -> bool:
    """`systemctl list-jobs --no-legend` lines: JOB UNIT TYPE STATE."""
    return any(line.split()[1:2] == ["reboot.target"] for line in jobs.splitlines())


class OperatorInbox:
    """Forced starts handed to this agent by `ringfence vm force-start` when the store has no
    quorum (see `ringfence.operator`, which renames each request file into place). Each
    request file is read once and removed. The decision cycle looks at every cycle, so the
    inbox is listed only when it may have changed (`listing.Stamp`)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = os.path.join(state_dir, "requests")
        self.stamp = Stamp(self.path)
        # Made here, as `ringfence vm force-start` would: a missing inbox can not vouch for
        # itself (its creation changes its parent), so it would be listed at every cycle.
        with contextlib.suppress(OSError):
            os.makedirs(self.path, exist_ok=True)

    def take(self) -> list[dict[str, Any]]:
        if self.stamp.unchanged():
            return []
        self.stamp.reading()
        requests = []
        for name in _request_files(self.path):
            path = Path(self.path, name)
            with contextlib.suppress(OSError, json.JSONDecodeError):
                requests.append(json.loads(path.read_text()))
            path.unlink(missing_ok=True)
        return requests


def _request_files(inbox: str) -> list[str]:
    """The sorted names ``glob("force-*.json")`` would find in `inbox` (`listing.names_in`:
    the decision cycle looks at every cycle)."""
    return names_in(inbox, lambda name: fnmatch.fnmatchcase(name, "force-*.json"))


def _force(agent: Agent, request: dict[str, Any]) -> None:
    if request.get("host") != agent.host:
        agent.parts.journal.record(
            "force_start_refused", host=agent.host, vm=str(request.get("vm")),
            operator=str(request.get("operator")) if request.get("operator") else None,
            reason=f"a forced start for {request.get('host')} reached {agent.host}")
        return
    agent.force_start(str(request.get("vm")), str(request.get("operator")),
                      [str(h) for h in request.get("confirm_down", [])])


def start_api(config: ClusterConfig, host: str, options: AgentOptions, agent: Agent
              ) -> str | None:
    """Serve the API, dashboard and metrics (`ringfence.api`) when the cluster file has an
    `api:` section: uvicorn in a thread of its own, reading the store over a connection of
    its own (only the store this host joined), so that it never waits for a cycle nor a
    cycle for it; refusals are journaled under the gate, like any other event. Returns the
    base URL, or None without an `api:` section. A tokens file readable by others, or a TLS
    certificate or key that can not be read or does not load, is a start-up error
    (ConfigError); an address it can not listen on is said on standard error
    and the agent runs on without its API (HA never depends on it)."""
    if config.api is None:
        return None
    from ringfence.api import StoreSource, create_app
    from ringfence.api.auth import Tokens
    from ringfence.api.server import ApiServer, split_listen, tls_files
    from ringfence.store.factory import open_store
    from ringfence.store.identity import IdentifiedStore

    api = config.api
    tokens = Tokens(api.tokens_file)
    certfile, keyfile = tls_files(api.tls)
    journal = agent.parts.journal
    gate = options.gate

    def record(kind: str, **fields: Any) -> None:
        with gate.held():
            journal.record(kind, **fields)

    store = IdentifiedStore(open_store(config, host=host), agent.identity, strict=True)
    source = StoreSource(config, store,
                         journal_files=[journal_file(options.state_dir, host)],
                         record=record)
    address, port = split_listen(api.listen)
    server = ApiServer(create_app(source, tokens=tokens, title=f"ringfence {config.name}",
                                  heartbeats=_heartbeat_counters(config, host, agent)),
                       address, port, certfile=certfile, keyfile=keyfile)
    try:
        server.start()
    except ConfigError as exc:
        sys.stderr.write(f"ringfence agent: {exc}; running without the API\n")
        return None
    options.closers.append(server.stop)
    return server.url


def _heartbeat_counters(config: ClusterConfig, host: str, agent: Agent
                        ) -> Callable[[], list[HeartbeatCounters]] | None:
    """What `/metrics` reads of the heartbeats this agent refused (its transport's counters:
    they are in no store)."""
    from ringfence.api.heartbeats import snapshot_of

    transport = agent.parts.transport
    if not isinstance(transport, UdpTransport):
        return None
    names = [h.name for h in config.hosts]
    networks = [link.name for link in transport.links]
    return lambda: [snapshot_of(transport, names, host, networks)]


def check_api(config: ClusterConfig) -> None:
    """The `api:` section's files (tokens, TLS certificate and key), checked before anything
    starts (no socket bound, no watchdog opened): a ConfigError naming the field."""
    if config.api is None:
        return
    from ringfence.api.auth import Tokens
    from ringfence.api.server import tls_files

    Tokens(config.api.tokens_file)
    tls_files(config.api.tls)


def run_agent(config: ClusterConfig, host: str, options: AgentOptions) -> int:
    check_api(config)
    agent = build_agent(config, host, options)
    start_api(config, host, options, agent)
    _notify_ready()
    try:
        return asyncio.run(_drive(agent, options))
    finally:
        for close in options.closers:
            with contextlib.suppress(Exception):
                close()
        sys.stderr.flush()
