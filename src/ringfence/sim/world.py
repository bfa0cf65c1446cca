"""The simulated world: virtual time, hosts with power and NICs, switches and partitions, a
store whose quorum follows connectivity, hypervisors whose domains are the ground truth, and
hardware watchdogs. The real `Agent` (with its `Manager`) runs on every simulated host.

Determinism: one event heap ordered by (time, insertion number), one seeded numpy generator
per run (packet loss and jitter), no iteration over unordered sets. The same scenario
and seed give the same history, byte for byte.

Connectivity rules (from the scenario contract): two endpoints talk while they share a network
on which both NICs have carrier and no partition separates them. A partition lists groups;
endpoints it does not list form one more group together. The store answers a host while that
host reaches a majority of store members that reach each other.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from greenlet import greenlet

from ringfence.config import ClusterConfig, Interface
from ringfence.core.agent import Agent, AgentParts
from ringfence.core.audit import audit_put
from ringfence.core.event_text import render
from ringfence.core.events import Fact, OfFact
from ringfence.core.identity import IDENTITY_MEMORY, Remembered
from ringfence.core.leases import (
    MANAGER_KEY,
    host_maintenance_key,
    migrate_request_key,
    vm_owner_key,
)
from ringfence.core.ports import (
    BoolArray,
    FloatArray,
    HostReading,
    IntArray,
    LeaseReport,
    NicReading,
)
from ringfence.core.topology import Topology
from ringfence.fence.base import FenceResult
from ringfence.hypervisor.base import JobResult
from ringfence.sim.alerting import AlertDelivery, offer
from ringfence.sim.calls import Calls, SlowCalls
from ringfence.sim.checker import Violation
from ringfence.sim.cycles import Cycles
from ringfence.sim.obligations import pet_violation
from ringfence.sim.parts import (
    SimAlerts,
    SimClock,
    SimFenceHandle,
    SimGuestChecks,
    SimHypervisor,
    SimJob,
    SimJournal,
    SimLocalState,
    SimPowerFence,
    SimProbes,
    SimTransport,
    SimWatchdog,
)
from ringfence.sim.scenario import Event, Scenario, SimSettings
from ringfence.sim.store import SimStore, SimStoreClient
from ringfence.sim.timeline import Timeline
from ringfence.store.base import Delete, Op, Put
from ringfence.store.identity import IDENTITY_KEY, StoreIdentity

IMPLICIT_DATASTORE = "vmstore"  # the datastore of a host whose cluster file names none


def with_interfaces(config: ClusterConfig) -> ClusterConfig:
    """Give every simulated host the MAC addresses a real cluster file would list (so the
    agent finds its interfaces by MAC, as in production). Hosts that list interfaces keep
    theirs."""
    hosts = []
    for i, host in enumerate(config.hosts):
        if host.interfaces:
            hosts.append(host)
            continue
        nets = config.host_networks(host.name)
        interfaces = {
            network: Interface(mac=f"52:54:00:{i // 256:02x}:{i % 256:02x}:{j:02x}",
                               name=f"eth{j}")
            for j, network in enumerate(nets)
        }
        hosts.append(host.model_copy(update={"interfaces": interfaces, "networks": nets}))
    return config.model_copy(update={"hosts": hosts})


class Power(StrEnum):
    OFF = "off"
    BOOTING = "booting"
    UP = "up"
    HUNG = "hung"


@dataclass
class SimHost:
    name: str
    index: int
    networks: list[str]
    carrier: dict[str, bool]
    power: Power = Power.UP
    boot: int = 0
    agent: Agent | None = None
    domains: dict[str, int] = field(default_factory=dict)
    # Live migrations arriving here: the paused domain libvirt creates on the target for the
    # copy. Listed as active (as libvirt lists it), but the guest does not execute here yet.
    incoming: dict[str, int] = field(default_factory=dict)
    hung_since: float | None = None
    hang_frozen: bool = False
    tick_origin: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # grid slots done, per cycle
    cycles: dict[str, greenlet] = field(default_factory=dict)  # lease/decision cycles running
    missed: set[str] = field(default_factory=set)  # cycles that missed a slot (hung, stalled)
    answered: set[str] = field(default_factory=set)  # calls that answered while hung/stalled
    wd_armed: bool = False
    wd_timeout: float = 0.0
    wd_deadline: float = 0.0
    wd_check_pending: bool = False
    nic_names: dict[str, str] = field(default_factory=dict)
    macs: dict[str, str] = field(default_factory=dict)
    carrier_changes: dict[str, int] = field(default_factory=dict)
    rename_at_boot: bool = False
    writable: dict[str, bool] = field(default_factory=dict)
    memory_errors: int = 0
    started_at: dict[str, float] = field(default_factory=dict)
    disk: dict[str, dict[str, object]] = field(default_factory=dict)
    stalled: bool = False  # `agent_stall`: the agent does not execute; VMs and watchdog do

    @property
    def power_up_or_hung(self) -> bool:
        return self.power in (Power.UP, Power.HUNG)


@dataclass
class Run:
    """An interval during which `vm` executed on `host`. `handed_to`: the run on the target
    that this run's live migration started at its end (the same guest, continuing)."""

    vm: str
    host: str
    start: float
    end: float | None = None
    handed_to: Run | None = field(default=None, repr=False)


@dataclass(frozen=True)
class JournalEntry(OfFact):
    """One journaled fact at simulated time `t`, with its rendered text."""

    t: float
    fact: Fact
    text: str


@dataclass(frozen=True)
class Alert:
    t: float
    severity: str
    text: str


@dataclass(frozen=True)
class Fault:
    t: float
    kind: str
    detail: dict[str, object]


class World:
    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.config: ClusterConfig = with_interfaces(scenario.cluster)
        self.settings: SimSettings = scenario.sim
        self.seed = seed
        self.rng_np = np.random.default_rng(seed)
        self.packet_loss = self.settings.packet_loss
        self.jitter = self.settings.link_jitter
        self.interval = scenario.cluster.timing.heartbeat_interval
        self.topology = Topology.from_config(self.config)
        self.now = 0.0
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.counter = itertools.count()
        self.networks = [n.name for n in self.config.networks]
        self.hosts: dict[str, SimHost] = {}
        for i, spec in enumerate(self.config.hosts):
            nets = self.config.host_networks(spec.name)
            host = SimHost(spec.name, i, nets, dict.fromkeys(nets, True))
            for network, interface in spec.interfaces.items():
                host.macs[network] = interface.mac or ""
                host.nic_names[network] = interface.name or network
                host.carrier_changes[network] = 0
            host.writable = dict.fromkeys(spec.datastores or [IMPLICIT_DATASTORE], True)
            self.hosts[spec.name] = host
        self.witness_up = {w.name: True for w in self.config.witnesses}
        self.endpoint_networks: dict[str, list[str]] = {
            **{h: s.networks for h, s in self.hosts.items()},
            **{w.name: self.config.host_networks(w.name) for w in self.config.witnesses},
        }
        self.partitions: dict[str, dict[str, int]] = {}  # network -> endpoint -> group
        self.store_members = self.config.store_members()
        self.store = SimStore(self.settings.store_election_time)
        self.calls = Calls(self, self.settings, seed)
        self.cycles = Cycles(self)
        self.vm_memory = {vm.name: vm.memory for vm in self.config.vms}
        self.migrations: dict[tuple[str, str, str], bool] = {}  # in flight: still intact?
        self.migration_jobs: dict[tuple[str, str, str], SimJob] = {}
        self.lost_members: set[str] = set()  # members whose data was wiped (store_wipe)
        self.requests_made = 0  # operator requests written (their ids: `_request_id`)
        self.foreign_stores: dict[str, SimStore] = {}  # host -> the empty store it reaches
        n, links = self.topology.host_links.shape
        self.last_sent: FloatArray = np.full(n, -np.inf)
        self.last_payload: BoolArray = np.zeros((n, n), dtype=np.bool_)
        self.last_flags: IntArray = np.zeros(n, dtype=np.int64)
        self.last_store: IntArray = np.zeros(n, dtype=np.int64)
        # Heartbeat numbers per sender: never reset, so they grow across its lives.
        self.last_seq: IntArray = np.zeros(n, dtype=np.int64)
        self.last_reports: list[dict[int, LeaseReport]] = [{} for _ in range(n)]
        self.hb_conn: BoolArray = np.zeros((n, n, links), dtype=np.bool_)
        self.hb_in: list[BoolArray] = []
        self.store_ok: dict[str, bool] = {}
        self.entries: list[JournalEntry] = []
        self.alerts: list[Alert] = []
        self.alert_deliveries: list[AlertDelivery] = []  # per route (`sim.alerting`)
        self.faults: list[Fault] = []
        self.runs: list[Run] = []
        self.open_runs: dict[tuple[str, str], Run] = {}
        self.starts: dict[str, int] = {}
        self.power_tl = {h: Timeline[str](Power.UP.value) for h in self.hosts}
        self.local_tl = {h: Timeline[str | None](None) for h in self.hosts}
        self.view_tl = {h: Timeline[str | None](None) for h in self.hosts}
        self.view_source: tuple[str | None, int] = (None, -1)
        # Per host and life (power on to power off): the renewals that really happened, and
        # when that life began (ground truth for `sim.obligations`).
        self.lives: dict[str, list[tuple[list[float], float]]] = {h: [([], 0.0)]
                                                                 for h in self.hosts}
        self.duty_tl = {h: Timeline[bool](True) for h in self.hosts}  # executing, no failsafe
        self.obligation_violations: list[Violation] = []

    # ================================================================ event loop
    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.heap, (t, next(self.counter), fn))

    def run(self, until: float) -> None:
        self._bootstrap()
        for event in sorted(self.scenario.events, key=lambda e: e.at):
            self.at(event.at, self._fault_callback(event))
        while self.heap and self.heap[0][0] <= until:
            t, _, fn = heapq.heappop(self.heap)
            self.now = t
            fn()
        self.now = until
        for run in self.runs:
            if run.end is None:
                run.end = until

    def _fault_callback(self, event: Event) -> Callable[[], None]:
        return lambda: self.apply_fault(event)

    def _bootstrap(self) -> None:
        """The store as a running cluster left it: its identity (remembered by every host),
        and every VM owned by its starting host."""
        identity = StoreIdentity(self.config.name, f"sim-{self.seed:x}", 1)
        ops: list[Op] = [Put(IDENTITY_KEY, identity.value()),
                         *(Put(vm_owner_key(vm.name), {"host": vm.host})
                           for vm in self.config.vms)]
        self.store.txn([], ops, None)
        for host in self.hosts.values():
            host.disk[IDENTITY_MEMORY] = Remembered(identity, self.store.rev).value()
        self._topology_changed()
        self.store.ready_at = 0.0  # the store was already running: no election at t=0
        interval = self.config.timing.heartbeat_interval
        count = len(self.hosts)
        for host in self.hosts.values():
            self._start_agent(host, phase=interval * host.index / count)

    # ================================================================ hosts
    def clock_rate(self, host: str) -> float:
        ppm = self.settings.clock_drift_ppm
        if not ppm:
            return 1.0
        index = self.topology.index(host)
        return 1.0 + ppm * 1e-6 * (1 if index % 2 else -1)

    def _start_agent(self, host: SimHost, phase: float = 0.0) -> None:
        host.power = Power.UP
        self.power_tl[host.name].set(self.now, Power.UP.value)
        fence_agents = {
            name: SimPowerFence(self, host.name) for name in sorted(self.config.fencing)
        }
        parts = AgentParts(
            clock=SimClock(self, host.name),
            store=SimStoreClient(self, self.store, host.name),
            hypervisor=SimHypervisor(self, host.name),
            watchdog=SimWatchdog(self, host.name),
            transport=SimTransport(self, host.name),
            journal=SimJournal(self, host.name),
            alerts=SimAlerts(self, host.name),
            fence_agents=fence_agents,
            probes=SimProbes(self, host.name),
            guest_checks=SimGuestChecks(self, host.name),
            local_state=SimLocalState(self, host.name),
            new_id=self._new_id,
        )
        host.agent = Agent(self.config, host.name, parts, self.topology)
        host.agent.want_status = False
        host.tick_origin, host.counts = self.now + phase, {}
        self.cycles.start(host)

    def _new_id(self) -> str:
        return f"sim-{int(self.rng_np.integers(0, 2**62)):x}"

    def executes(self, host: SimHost) -> bool:
        """Does the host's agent execute now (powered up, not hung, not stalled)?"""
        return host.power == Power.UP and not host.stalled

    def suspend(self, host: SimHost, seconds: float) -> None:
        """The calling cycle of `host` waits `seconds` in a call (see `sim.calls`)."""
        self.cycles.suspend(host, seconds)

    def lease_renewed(self, host: str, sent: float) -> None:
        """Ground truth for `sim.obligations`: the host's lease was renewed by a request made
        at `sent` (a keepalive, or the grant of the lease a registration attached)."""
        self.lives[host][-1][0].append(sent)

    def duty_cuts(self, host: str) -> list[tuple[float, bool]]:
        return self.duty_tl[host].changes()

    def _record_duty(self, host: SimHost) -> None:
        on_duty = (self.executes(host) and host.agent is not None
                   and not host.agent.failsafe)
        self.duty_tl[host.name].set(self.now, on_duty)

    def record_states(self, host: SimHost) -> None:
        assert host.agent is not None
        self._record_duty(host)
        self.local_tl[host.name].set(self.now, host.agent.local_state())
        leader_kv = self.store.kv.get(MANAGER_KEY) if self.store.has_quorum else None
        leader = leader_kv.value.get("host") if leader_kv else None
        agent = self.hosts[leader].agent if leader else None
        if agent is None or not agent.manager.is_leader:
            source: tuple[str | None, int] = (None, -1)
        else:
            source = (leader, agent.manager.view_version)
        if source == self.view_source:
            return
        self.view_source = source
        view = agent.manager.view if agent is not None and source[0] else {}
        for name, tl in self.view_tl.items():
            tl.set(self.now, view.get(name))

    def host_runs(self, name: str) -> bool:
        return self.hosts[name].power == Power.UP

    def _power_down(self, host: SimHost, why: str) -> None:
        self.cycles.kill(host)
        host.stalled = False
        self.lives[host.name].append(([], self.now))  # a new life proves itself anew

        for vm in sorted(host.domains):
            self._close_run(vm, host.name)
        host.domains.clear()
        for vm in sorted(host.incoming):
            self._incoming_lost(host.name, vm, f"{host.name} went down")
        for (vm, source, target), _job in list(self.migration_jobs.items()):
            if source == host.name:  # the guest died with its source: the copy is torn down
                self.migrations[(vm, source, target)] = False
                self.hosts[target].incoming.pop(vm, None)
        host.agent = None
        host.power = Power.OFF
        host.boot += 1
        host.hung_since = None
        host.wd_armed = False
        self.last_sent[host.index] = -np.inf
        self.power_tl[host.name].set(self.now, Power.OFF.value)
        self.local_tl[host.name].set(self.now, None)
        self._record_duty(host)
        self._topology_changed()

    def _power_up(self, host: SimHost) -> None:
        if host.power != Power.OFF:
            return
        host.power = Power.BOOTING
        host.boot += 1
        self.power_tl[host.name].set(self.now, Power.BOOTING.value)
        boot = host.boot

        def booted() -> None:
            if host.boot == boot and host.power == Power.BOOTING:
                if host.rename_at_boot:
                    host.rename_at_boot = False
                    for j, network in enumerate(sorted(host.nic_names)):
                        host.nic_names[network] = f"enp{host.index + 3}s0f{j}"
                self._start_agent(host)
                self._topology_changed()

        self.at(self.now + self.settings.boot_time, booted)

    # ================================================================ host states
    def host_state(self, name: str, t: float) -> str:
        """What ringfence says of a host at time `t`: the leader's view where it has proven
        or suspects something, else the host's own agent, else its power."""
        power = self.power_tl[name].at(t)
        view = self.view_tl[name].at(t)
        local = self.local_tl[name].at(t)
        if view in ("fenced", "suspect"):
            return view
        if power in (Power.OFF, Power.BOOTING):
            return "offline"
        if local in ("fenced", "waiting_for_quorum", "offline"):
            return local
        if local in ("ineligible", "jeopardy", "degraded") and power == Power.UP:
            return local
        shown = view if view != "unknown" else None  # the leader has not heard it yet
        return shown or local or "offline"  # online, maintenance

    def host_state_since(self, name: str, t: float) -> float:
        """When the state `host_state(name, t)` began."""
        state = self.host_state(name, t)
        times = sorted({c for tl in (self.power_tl[name], self.view_tl[name],
                                     self.local_tl[name]) for c in tl.times if c <= t})
        since = 0.0
        for c in reversed(times):
            if self.host_state(name, c) != state:
                break
            since = c
        return since

    # ================================================================ probes
    def probe(self, name: str) -> HostReading:
        host = self.hosts[name]
        nics = tuple(
            NicReading(host.macs[n], host.nic_names[n], host.carrier.get(n, False),
                       host.carrier_changes[n])
            for n in sorted(host.macs)
        )
        stores = {d: (None if ok else "write failed: permission denied (EACCES)")
                  for d, ok in sorted(host.writable.items())}
        return HostReading(nics, stores, host.memory_errors)

    def guest_answers(self, name: str, vm: str) -> bool:
        """Does the guest answer its check? Only while it runs on a host that is up, whose VM
        networks have carrier, whose storage is writable, once it has booted."""
        host = self.hosts[name]
        if host.power != Power.UP or vm not in host.domains:
            return False
        roles = {n.name: set(n.role) for n in self.config.networks}
        if any(not host.carrier.get(n, False) for n in host.networks if "vm" in roles[n]):
            return False
        if not all(host.writable.values()):
            return False
        return self.now - host.started_at.get(vm, self.now) >= self.settings.vm_start_time

    # ================================================================ VMs (ground truth)
    def vm_start(self, host: str, vm: str, token: int) -> None:
        domains = self.hosts[host].domains
        if vm not in domains:
            self._open_run(vm, host)
            self.starts[vm] = self.starts.get(vm, 0) + 1
            self.hosts[host].started_at[vm] = self.now
        domains[vm] = token

    def vm_stop(self, host: str, vm: str) -> None:
        if self.hosts[host].domains.pop(vm, None) is not None:
            self._close_run(vm, host)
        elif vm in self.hosts[host].incoming:
            self._incoming_lost(host, vm, f"{host} destroyed the incoming domain")

    def _incoming_lost(self, target: str, vm: str, why: str) -> None:
        """The target's half of a live migration is gone: the source's job fails at once
        (libvirt's migration call returns an error) and the guest stays on the source."""
        del self.hosts[target].incoming[vm]
        for key, job in list(self.migration_jobs.items()):
            if key[0] == vm and key[2] == target:
                self.migrations[key] = False
                if job.outcome is None:
                    job.outcome = JobResult(False, f"the migration of {vm} to {target} "
                                                   f"failed: {why}")

    def migration_time(self, vm: str) -> float:
        """A live migration copies the guest's memory, then switches over."""
        memory = self.vm_memory.get(vm, 0)
        return memory / self.settings.migration_bandwidth + self.settings.migration_switchover

    def hypervisor_job(self, host: str, action: Callable[[], object]) -> SimJob:
        """A start or stop: it takes the hypervisor's call latency, then happens (unless the
        host went down, or the job was cancelled, meanwhile)."""
        job = SimJob()
        delay = self.calls.latency(host, "hypervisor")
        sim_host = self.hosts[host]
        boot = sim_host.boot

        def done() -> None:
            if job.cancelled or sim_host.boot != boot or sim_host.power != Power.UP:
                return
            action()
            job.outcome = JobResult(True, "done")

        if delay <= 0:
            done()
        else:
            self.at(self.now + delay, done)
        return job

    def migration_job(self, source: str, vm: str, target: str, token: int) -> SimJob:
        """Live migration: the guest keeps running on `source` while its memory is copied
        (`migration_time`), then stops executing there and continues on `target` at the same
        instant (no overlap). It fails, and the guest stays on `source`, if the target goes
        down or the two can no longer talk before the switchover, or if it is cancelled
        (aborted) first; if the source goes down, the guest dies with it."""
        job = SimJob()
        src, dst = self.hosts[source], self.hosts[target]
        refused = None
        if vm not in src.domains:
            refused = f"{vm} does not run on {source}"
        elif dst.power != Power.UP or not self.talk(source, target):
            refused = f"{target} can not be reached from {source} for migration"
        elif vm in dst.domains or vm in dst.incoming:
            refused = f"{vm} already exists on {target}"
        if refused is not None:
            job.outcome = JobResult(False, refused)
            return job
        key = (vm, source, target)
        self.migrations[key] = True
        self.migration_jobs[key] = job
        dst.incoming[vm] = token
        boot, dst_boot = src.boot, dst.boot

        def switchover() -> None:
            intact = self.migrations.pop(key, False)
            self.migration_jobs.pop(key, None)
            if dst.boot == dst_boot:
                dst.incoming.pop(vm, None)
            if job.outcome is not None or src.boot != boot:
                return  # cancelled, or failed already, or the source died with the guest
            if not intact or dst.power != Power.UP or not self.talk(source, target):
                job.outcome = JobResult(False, f"the migration of {vm} to {target} failed: "
                                               f"{target} went down or could not be reached "
                                               f"before the switchover")
                return
            if vm not in src.domains or src.power != Power.UP:
                job.outcome = JobResult(False, f"{vm} no longer runs on {source}")
                return
            self._switch_over(source, vm, target, token)
            job.outcome = JobResult(True, f"{vm} live-migrated to {target}")

        delay = self.calls.latency(source, "hypervisor") + self.migration_time(vm)
        self.at(self.now + delay, switchover)
        return job

    def _switch_over(self, source: str, vm: str, target: str, token: int) -> None:
        src, dst = self.hosts[source], self.hosts[target]
        del src.domains[vm]
        handed = self.open_runs.get((vm, source))
        self._close_run(vm, source)
        dst.domains[vm] = token
        dst.started_at[vm] = src.started_at.pop(vm, self.now)
        arrived = self._open_run(vm, target)
        if handed is not None:
            handed.handed_to = arrived

    def _open_run(self, vm: str, host: str) -> Run:
        run = Run(vm, host, self.now)
        self.runs.append(run)
        self.open_runs[(vm, host)] = run
        return run

    def _close_run(self, vm: str, host: str) -> None:
        run = self.open_runs.pop((vm, host), None)
        if run is not None:
            run.end = self.now

    # ================================================================ watchdog
    def watchdog_arm(self, name: str, timeout: float) -> None:
        host = self.hosts[name]
        host.wd_armed, host.wd_timeout = True, timeout
        # Arming starts the count before the agent asks for a lease: it vouches for no lease,
        # unless guests already run here (then it is judged as a pet).
        self.watchdog_pet(name, judge=bool(host.domains))

    def watchdog_pet(self, name: str, *, judge: bool = True) -> None:
        host = self.hosts[name]
        if not host.wd_armed:
            return
        stale = pet_violation(self, name) if judge else None
        if stale is not None:
            self.obligation_violations.append(stale)
        host.wd_deadline = self.now + host.wd_timeout
        if not host.wd_check_pending:
            host.wd_check_pending = True
            boot = host.boot
            self.at(host.wd_deadline, lambda: self._watchdog_check(host, boot))

    def watchdog_disarm(self, name: str) -> None:
        self.hosts[name].wd_armed = False

    def _watchdog_check(self, host: SimHost, boot: int) -> None:
        host.wd_check_pending = False
        if host.boot != boot or not host.wd_armed:
            return
        if host.power == Power.HUNG and host.hang_frozen:
            return  # a frozen watchdog does not count; `resume` re-arms the check
        if self.now < host.wd_deadline:
            host.wd_check_pending = True
            self.at(host.wd_deadline, lambda: self._watchdog_check(host, boot))
            return
        self.journal("watchdog_reset", host=host.name, limit=host.wd_timeout)
        self._power_down(host, "watchdog")
        self._power_up(host)

    # ================================================================ heartbeats
    def heartbeat_sent(self, index: int, heard: BoolArray, flags: int, store: int,
                       reports: Mapping[int, LeaseReport] | None = None) -> int:
        self.last_sent[index] = self.now
        self.last_payload[index] = heard
        self.last_flags[index] = flags
        self.last_store[index] = store
        self.last_seq[index] += 1
        self.last_reports[index] = dict(reports) if reports else {}
        return int(self.last_seq[index])

    def heartbeat_links_to(self, index: int) -> BoolArray:
        """[sender, link] connectivity into host `index` (contiguous, rebuilt on change)."""
        return self.hb_in[index]

    # ================================================================ connectivity
    def _endpoint_up(self, name: str) -> bool:
        if name in self.hosts:
            return self.hosts[name].power == Power.UP
        return self.witness_up.get(name, False)

    def _carrier(self, name: str, network: str) -> bool:
        host = self.hosts.get(name)
        return host.carrier.get(network, False) if host else True

    def _same_side(self, a: str, b: str, network: str) -> bool:
        groups = self.partitions.get(network)
        return groups is None or groups.get(a, -1) == groups.get(b, -1)

    def talk(self, a: str, b: str) -> bool:
        """Can endpoints `a` and `b` exchange packets now (on any shared network)?"""
        if a == b:
            return True
        shared = [n for n in self.endpoint_networks[a] if n in self.endpoint_networks[b]]
        return any(
            self._carrier(a, n) and self._carrier(b, n) and self._same_side(a, b, n)
            for n in shared
        )

    def _topology_changed(self) -> None:
        names = self.topology.hosts
        for j, link in enumerate(self.topology.links):
            for s, sender in enumerate(names):
                for r, receiver in enumerate(names):
                    self.hb_conn[s, r, j] = (
                        s != r
                        and link in self.hosts[sender].carrier
                        and link in self.hosts[receiver].carrier
                        and self.hosts[sender].carrier[link]
                        and self.hosts[receiver].carrier[link]
                        and self._same_side(sender, receiver, link)
                    )
        self.hb_in = [np.ascontiguousarray(self.hb_conn[:, r, :]) for r in range(len(names))]
        cliques = self._quorum_cliques()
        leader = self.store.leader
        if cliques and not any(leader in c for c in cliques):
            leader = cliques[0][0]
        self.store.quorum_changed(self.now, leader if cliques else None)
        for key in self.migrations:
            _vm, source, target = key
            if self.hosts[target].power != Power.UP or not self.talk(source, target):
                self.migrations[key] = False
        self.store_ok = {
            h: self._endpoint_up(h) and any(all(self.talk(h, m) for m in c) for c in cliques)
            for h in self.hosts
        }

    def _quorum_cliques(self) -> list[tuple[str, ...]]:
        """Majorities of store members that are up and all talk to each other."""
        members = self.store_members
        need = len(members) // 2 + 1
        up = [m for m in members if self._endpoint_up(m) and m not in self.lost_members]
        if len(up) < need:
            return []
        cliques: list[tuple[str, ...]] = []
        if len(up) <= 12:
            for size in range(len(up), need - 1, -1):
                for combo in itertools.combinations(up, size):
                    if all(self.talk(a, b) for a, b in itertools.combinations(combo, 2)):
                        cliques.append(combo)
                if cliques:
                    break
            return cliques
        # Large member sets: candidates are the groups that one network connects.
        for network in self.networks:
            by_group: dict[int, list[str]] = {}
            for m in up:
                if network in self.endpoint_networks[m] and self._carrier(m, network):
                    group = self.partitions.get(network, {}).get(m, -1)
                    by_group.setdefault(group, []).append(m)
            cliques.extend(tuple(g) for g in by_group.values() if len(g) >= need)
        return cliques

    def store_reachable(self, host: str) -> bool:
        return self.store_ok.get(host, False)

    # ================================================================ fencing
    def power_fence(self, fencer: str, target: str, action: str, handle: SimFenceHandle
                    ) -> None:
        """The power controller acts after `delay + duration` (or, with `hang`, only then:
        the agent answers late and acts when it answers), unless the fence was stopped."""
        spec = self.config.fencing[target]

        def done() -> None:
            if handle.cancelled:
                return  # stopped: it never acts
            network = spec.network
            if network and not (self._endpoint_up(fencer) and self._carrier(fencer, network)):
                handle.outcome = FenceResult(False, f"{fencer} can not reach {target}'s power "
                                                    f"controller on {network}")
                return
            host = self.hosts[target]
            if host.power != Power.OFF:
                self._power_down(host, "fence")
            handle.outcome = FenceResult(True, f"power controller reports {target} off")
            if action == "reboot":
                self._power_up(host)

        self.at(self.now + spec.delay + (spec.hang if spec.hang is not None else spec.duration),
                done)

    # ================================================================ journal
    def journal_fact(self, fact: Fact) -> None:
        self.entries.append(JournalEntry(self.now, fact, render(fact)))

    def journal(self, kind: str, **fields: Any) -> None:
        """An event the world itself journals (a watchdog reset, an operator's command)."""
        self.journal_fact(Fact(kind, None, **fields))

    def alert(self, severity: str, text: str, *, host: str | None = None,
              vm: str | None = None, by: str | None = None) -> None:
        self.alerts.append(Alert(self.now, severity, text))
        self.journal_fact(Fact("alert_sent", by, host=host, vm=vm, severity=severity,
                               detail=text))
        if self.config.alerts:
            offer(self, severity, text, host, vm, by)

    # ================================================================ faults
    def apply_fault(self, event: Event) -> None:
        detail = {k: v for k, v in event.model_dump(exclude_defaults=True, by_alias=True).items()
                  if k not in ("at", "do")}
        if event.do == "hang":
            detail["watchdog"] = event.watchdog
        self.faults.append(Fault(self.now, event.do, detail))
        handler = getattr(self, f"_fault_{event.do}")  # every kind of the schema has one
        handler(event)

    def _host(self, event: Event) -> SimHost:
        assert event.host is not None
        return self.hosts[event.host]

    def _fault_power_off(self, event: Event) -> None:
        host = self._host(event)
        if host.power != Power.OFF:
            self._power_down(host, "power_off")

    def _fault_power_on(self, event: Event) -> None:
        self._power_up(self._host(event))

    def _fault_reboot(self, event: Event) -> None:
        self._clean_stop(self._host(event), reboot=True)

    def _fault_shutdown(self, event: Event) -> None:
        self._clean_stop(self._host(event), reboot=False)

    def _clean_stop(self, host: SimHost, *, reboot: bool) -> None:
        """The operating system's clean shutdown: the agent stops (or drains) first."""
        agent = host.agent if host.power == Power.UP else None
        if agent is not None and not agent.begin_shutdown(reboot=reboot):
            self._wait_for_drain(host, reboot, host.boot)
            return
        self._power_cycle(host, reboot)

    def _wait_for_drain(self, host: SimHost, reboot: bool, boot: int) -> None:
        def check() -> None:
            if host.boot != boot:
                return  # something else (a fence, a power cut) ended this boot
            if host.agent is not None and host.agent.mode != "stopped":
                self._wait_for_drain(host, reboot, boot)
                return
            self._power_cycle(host, reboot)

        self.at(self.now + self.config.timing.heartbeat_interval, check)

    def _power_cycle(self, host: SimHost, reboot: bool) -> None:
        if host.power != Power.OFF:
            self._power_down(host, "reboot" if reboot else "shutdown")
        if reboot:
            self._power_up(host)

    def _fault_hang(self, event: Event) -> None:
        host = self._host(event)
        if host.power != Power.UP:
            return
        host.power = Power.HUNG
        host.hung_since = self.now
        host.hang_frozen = event.watchdog == "frozen"
        self._record_duty(host)
        for vm in sorted(host.domains):
            self._close_run(vm, host.name)  # frozen guests do not execute
        self.power_tl[host.name].set(self.now, Power.HUNG.value)
        self._topology_changed()

    def _fault_resume(self, event: Event) -> None:
        host = self._host(event)
        if host.power != Power.HUNG:
            return
        host.power = Power.UP
        if host.hang_frozen and host.hung_since is not None:
            host.wd_deadline += self.now - host.hung_since
            if host.wd_armed and not host.wd_check_pending:
                host.wd_check_pending = True
                boot = host.boot
                self.at(host.wd_deadline, lambda: self._watchdog_check(host, boot))
        host.hung_since = None
        for vm in sorted(host.domains):
            self._open_run(vm, host.name)  # guests run again the instant the host resumes
        self.power_tl[host.name].set(self.now, Power.UP.value)
        self._record_duty(host)
        self._topology_changed()
        self.cycles.wake(host)

    def _fault_agent_stall(self, event: Event) -> None:
        """The agent process stops executing (SIGSTOP): its cycles, heartbeats and store
        calls stop; its VMs keep running and its watchdog keeps counting."""
        host = self._host(event)
        if host.power != Power.UP or host.stalled:
            return
        assert event.for_ is not None
        host.stalled = True
        self._record_duty(host)
        boot = host.boot

        def end() -> None:
            if host.boot == boot and host.stalled:
                host.stalled = False
                self._record_duty(host)
                self.cycles.wake(host)

        self.at(self.now + event.for_, end)

    def _fault_slow_calls(self, event: Event) -> None:
        assert event.host is not None and event.part is not None
        assert event.latency is not None and event.for_ is not None
        self.calls.slow.append(SlowCalls(event.host, event.part, event.latency,
                                         self.now + event.for_))

    def _fault_lost_answers(self, event: Event) -> None:
        assert event.host is not None and event.for_ is not None
        self.calls.lost_until[event.host] = max(self.calls.lost_until.get(event.host, 0.0),
                                                self.now + event.for_)

    def _links(self, event: Event) -> list[str]:
        host = self._host(event)
        if event.network in (None, "all"):
            return list(host.networks)
        return [event.network] if event.network in host.carrier else []

    def _fault_link_down(self, event: Event) -> None:
        host = self._host(event)
        for network in self._links(event):
            if host.carrier[network]:
                host.carrier[network] = False
                host.carrier_changes[network] += 1
        self._topology_changed()

    def _fault_link_up(self, event: Event) -> None:
        host = self._host(event)
        for network in self._links(event):
            if not host.carrier[network]:
                host.carrier[network] = True
                host.carrier_changes[network] += 1
        self._topology_changed()

    def _fault_partition(self, event: Event) -> None:
        networks = event.networks or self.networks
        for network in networks:
            groups: dict[str, int] = {}
            for g, members in enumerate(event.groups or []):
                for member in members:
                    groups[member] = g
            self.partitions[network] = groups
        self._topology_changed()

    def _fault_heal(self, event: Event) -> None:
        for network in event.networks or self.networks:
            self.partitions.pop(network, None)
        self._topology_changed()

    def _fault_witness_down(self, event: Event) -> None:
        assert event.witness is not None
        self.witness_up[event.witness] = False
        self._topology_changed()

    def _fault_witness_up(self, event: Event) -> None:
        assert event.witness is not None
        self.witness_up[event.witness] = True
        self._topology_changed()

    def _fault_link_flap(self, event: Event) -> None:
        """`count` drops and returns of carrier within one second."""
        host = self._host(event)
        count = event.count or 1
        networks = self._links(event)
        step = 1.0 / (2 * count)

        def set_carrier(up: bool) -> None:
            for network in networks:
                if host.carrier.get(network) != up:
                    host.carrier[network] = up
                    host.carrier_changes[network] += 1
            self._topology_changed()

        for i in range(count):
            self.at(self.now + 2 * i * step, lambda: set_carrier(False))
            self.at(self.now + (2 * i + 1) * step, lambda: set_carrier(True))

    def _fault_rename_nics(self, event: Event) -> None:
        self._host(event).rename_at_boot = True

    def _datastores(self, event: Event) -> list[str]:
        host = self._host(event)
        if event.datastore is None:
            return sorted(host.writable)
        return [event.datastore] if event.datastore in host.writable else []

    def _fault_storage_fail(self, event: Event) -> None:
        for datastore in self._datastores(event):
            self._host(event).writable[datastore] = False

    def _fault_storage_ok(self, event: Event) -> None:
        for datastore in self._datastores(event):
            self._host(event).writable[datastore] = True

    def _fault_memory_errors(self, event: Event) -> None:
        self._host(event).memory_errors += event.count or 1

    def _fault_vm_crash(self, event: Event) -> None:
        assert event.vm is not None
        for host in self.hosts.values():
            if event.vm in host.domains and host.power == Power.UP:
                self.vm_stop(host.name, event.vm)

    def _fault_force_start(self, event: Event) -> None:
        host = self._host(event)
        assert event.vm is not None and event.operator is not None
        if host.power != Power.UP or host.agent is None:
            self.journal("force_start_refused", host=host.name, vm=event.vm,
                         operator=event.operator, reason=f"the host is {host.power}")
            return
        host.agent.force_start(event.vm, event.operator, list(event.confirm_down))

    # ---------------------------------------------------------------- operator actions
    def _operator_write(self, what: str, ops: list[Op]) -> bool:
        """An operator's command goes to the store (through any host that reaches it)."""
        if not self.store.available(self.now) or not any(self.store_ok.values()):
            self.journal("operator_refused", operator="operator",
                         reason=f"{what}: the store has no quorum")
            return False
        self.store.expire(self.now)
        self.store.txn([], ops, None)
        return True

    def _request_id(self) -> str:
        """Deterministic request ids (the CLI draws random ones): same file, same run."""
        self.requests_made += 1
        return f"r-sim-{self.requests_made}"

    def _fault_maintenance(self, event: Event) -> None:
        """Like `ringfence host maintenance`: the key and its audit note in one write; the
        leader journals `maintenance_on`/`maintenance_off` from the note."""
        host = self._host(event)
        key = host_maintenance_key(host.name)
        request = self._request_id()
        if event.on:
            self._operator_write(f"maintenance on {host.name}", [
                Put(key, {"by": "operator", "reason": "maintenance", "request": request}),
                audit_put("maintenance_on", "operator", request, host=host.name)])
        else:
            self._operator_write(f"maintenance off {host.name}", [
                Delete(key), audit_put("maintenance_off", "operator", request, host=host.name)])

    def _fault_store_wipe(self, event: Event) -> None:
        """The store's data is lost. Without `member`: the whole store answers empty. With a
        member: that member lost its data and came back as a new, empty, one-member cluster
        at its address; it no longer counts for the cluster's quorum, and a host that is that
        member talks to it (its own member first, as `store.factory` orders endpoints)."""
        if event.member is None:
            self.store.wipe()
            return
        self.lost_members.add(event.member)
        if event.member in self.hosts:
            fresh = SimStore(self.settings.store_election_time)
            fresh.leader = event.member
            self.foreign_stores[event.member] = fresh
        self._topology_changed()

    def _fault_migrate(self, event: Event) -> None:
        assert event.vm is not None and event.to is not None
        request = self._request_id()
        self._operator_write(f"migrate {event.vm}", [
            Put(migrate_request_key(event.vm),
                {"to": event.to, "by": "operator", "request": request}),
            audit_put("operator_request", "operator", request, vm=event.vm, target=event.to,
                      reason=f"migrate {event.vm} to {event.to}")])
