"""The host agent's decision cycle: heartbeats, host lease, self-fence, VM reconciliation.

One `Agent` per host. `tick()` runs one cycle (every `heartbeat_interval`) and returns a status
string; it never blocks on anything but the injected parts, and it never reads a wall clock.

Failure semantics, in the order a cycle meets them:

- Store unreachable at start: the agent starts nothing and reports `waiting_for_quorum`
  (cold start waits for quorum).
- Store unreachable later: the agent keeps its VMs while its last successful renewal is
  younger than `host_lease_ttl - safety_margin` (see `core.leases`); after that it destroys
  them at once, stops petting the watchdog and reports `self_fenced`. The watchdog then resets
  the host; the agent never tries to undo a self-fence.
- The store says our lease is gone (it expired while we could not renew, or a manager revoked
  it after fencing us): the same self-fence, at once.
- A hypervisor error: journaled; the next cycle re-lists the hypervisor and tries again.
- The watchdog is petted only at the end of a cycle in which the lease is fresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ringfence.config import ClusterConfig
from ringfence.core import leases
from ringfence.core.manager import Manager
from ringfence.core.membership import Membership, PeerChange, PeerState
from ringfence.core.ports import AlertSink, Clock, Journal, Transport
from ringfence.core.topology import Topology
from ringfence.fence.base import FenceAgent, Watchdog
from ringfence.hypervisor.base import Hypervisor, HypervisorError
from ringfence.store.base import Compare, Delete, Put, Store, StoreUnavailable

# Timers are checked once per cycle; float noise of a microsecond must not cost a cycle.
TIMER_SLACK = 1e-6


def running_after(hypervisor: Hypervisor) -> bool:
    """Does anything still run (or can we not tell)?"""
    try:
        return bool(hypervisor.list_running())
    except HypervisorError:
        return True


class AgentMode(StrEnum):
    WAITING_FOR_QUORUM = "waiting_for_quorum"
    ACTIVE = "active"
    SELF_FENCED = "self_fenced"
    STOPPED = "stopped"


@dataclass
class AgentParts:
    """Everything an agent does I/O through. The simulator and the runtime each build one."""

    clock: Clock
    store: Store
    hypervisor: Hypervisor
    watchdog: Watchdog
    transport: Transport
    journal: Journal
    alerts: AlertSink
    fence_agents: Mapping[str, FenceAgent] = field(default_factory=dict)


class Agent:
    def __init__(
        self,
        config: ClusterConfig,
        host: str,
        parts: AgentParts,
        topology: Topology | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.parts = parts
        self.timing = config.timing
        self.topology = topology or Topology.from_config(config)
        self.membership = Membership(
            self.topology, host, config.timing.effective_heartbeat_timeout
        )
        self.mode = AgentMode.WAITING_FOR_QUORUM
        self.lease_id: int | None = None
        self.incarnation = 0
        self.last_renewal_sent: float | None = None  # send time of the last renewal that worked
        self.next_renewal = 0.0
        self.store_lost_since: float | None = None
        self.watchdog_armed = False
        self.said_waiting = False
        self.owned: dict[str, int] = {}  # VMs the store assigns to us -> fencing token
        self.owners_revision = -1
        self.status = "starting"
        self.manager = Manager(config, host, parts, self)

    # ----------------------------------------------------------------- the cycle
    def tick(self) -> str:
        now = self.parts.clock.now()
        if self.mode in (AgentMode.SELF_FENCED, AgentMode.STOPPED):
            self.status = f"{self.host}: {self.mode}"
            return self.status
        self._exchange_heartbeats(now)
        if self.lease_id is None:
            self._register(now)
        elif now >= self.next_renewal - TIMER_SLACK:
            self._renew(now)
        if self.mode == AgentMode.ACTIVE and not self._lease_fresh(now):
            self._self_fence(now, self._staleness_reason(now))
        if self.mode == AgentMode.ACTIVE:
            self._reconcile()
            self.parts.watchdog.pet()
            self.manager.tick(now)
        self.status = self._status_line(now)
        return self.status

    # ----------------------------------------------------------------- heartbeats
    def _exchange_heartbeats(self, now: float) -> None:
        changes = self.membership.observe(now, self.parts.transport.receive())
        for change in changes:
            self._journal_peer_change(change)
        self.parts.transport.send(self.membership.heard())

    def _journal_peer_change(self, change: PeerChange) -> None:
        journal, me = self.parts.journal, self.host
        if change.new == PeerState.LOST:
            journal.record(
                "heartbeat_lost", host=change.peer,
                text=f"{me} hears nothing from {change.peer} on {', '.join(change.dead_links)} "
                     f"for {self.membership.timeout:g}s",
            )
        elif change.new == PeerState.JEOPARDY:
            text = (f"{me} hears {change.peer} only on {', '.join(change.alive_links)} "
                    f"(lost: {', '.join(change.dead_links)})")
            journal.record("jeopardy", host=me, text=text)
            self.parts.alerts.send("warning", f"heartbeat link lost: {text}", host=me)
        elif change.new == PeerState.UP and change.old in (PeerState.JEOPARDY, PeerState.LOST):
            journal.record("heartbeat_restored", host=change.peer,
                           text=f"{me} hears {change.peer} on every link again")

    # ----------------------------------------------------------------- host lease
    def _register(self, now: float) -> None:
        """Take a fresh host lease: the start of a new incarnation of this host."""
        store = self.parts.store
        try:
            info = store.get(leases.host_info_key(self.host))
            incarnation = int(info.value.get("incarnation", 0)) + 1 if info else 1
            lease = store.grant(self.timing.host_lease_ttl)
            result = store.txn(
                [Compare.unchanged(leases.host_info_key(self.host),
                                   info.mod_revision if info else 0)],
                [
                    Put(leases.host_lease_key(self.host), {"host": self.host,
                                                           "incarnation": incarnation}, lease),
                    Put(leases.host_info_key(self.host), {"incarnation": incarnation}),
                    Delete(leases.host_fenced_key(self.host)),
                    Delete(leases.host_offline_key(self.host)),
                ],
            )
        except StoreUnavailable:
            if not self.said_waiting:
                self.said_waiting = True
                self.parts.journal.record(
                    "waiting_for_quorum", host=self.host,
                    text=f"{self.host} can not reach a store quorum; starting nothing")
            return
        if not result.succeeded:
            return  # someone else registered this host name meanwhile: retry next cycle
        self.lease_id, self.incarnation = lease, incarnation
        self.last_renewal_sent = now
        self.next_renewal = now + leases.renewal_interval(self.timing)
        self.mode = AgentMode.ACTIVE
        if not self.watchdog_armed:
            self.parts.watchdog.arm(self.timing.watchdog_timeout)
            self.watchdog_armed = True
        self.parts.journal.record(
            "quorum_gained", host=self.host,
            text=f"{self.host} joined with incarnation {incarnation}")

    def _renew(self, now: float) -> None:
        assert self.lease_id is not None
        try:
            alive = self.parts.store.keepalive(self.lease_id)
        except StoreUnavailable:
            if self.store_lost_since is None:
                self.store_lost_since = now
                self.parts.journal.record(
                    "quorum_lost", host=self.host,
                    text=f"{self.host} can not renew its lease: store unreachable")
            self.next_renewal = now + self.timing.heartbeat_interval
            return
        if not alive:
            self.parts.journal.record(
                "lease_expired", host=self.host,
                text=f"{self.host}'s own lease is gone from the store")
            self._self_fence(now, "the store no longer holds this host's lease")
            return
        if self.store_lost_since is not None:
            lost_for = now - self.store_lost_since
            self.parts.journal.record(
                "quorum_gained", host=self.host,
                text=f"{self.host} reaches the store again after {lost_for:.1f}s")
            self.store_lost_since = None
        self.last_renewal_sent = now
        self.next_renewal = now + leases.renewal_interval(self.timing)

    def _lease_fresh(self, now: float) -> bool:
        return self.last_renewal_sent is not None and leases.lease_is_fresh(
            now - self.last_renewal_sent, self.timing)

    def _staleness_reason(self, now: float) -> str:
        age = now - (self.last_renewal_sent or now)
        return f"store unreachable, lease last renewed {age:.1f}s ago"

    def _self_fence(self, now: float, reason: str) -> None:
        """Stop every VM at once and stop petting: the watchdog finishes the job."""
        hypervisor = self.parts.hypervisor
        try:
            running = sorted(hypervisor.list_running())
        except HypervisorError:
            running = sorted(self.owned)
        for vm in running:
            try:
                hypervisor.destroy(vm)
                self.parts.journal.record(
                    "vm_stopped", host=self.host, vm=vm, text=f"{vm} destroyed by self-fence")
            except HypervisorError as exc:
                self.parts.journal.record(
                    "vm_stop_failed", host=self.host, vm=vm,
                    text=f"{vm}: {exc}; the watchdog will reset {self.host}")
        self.mode = AgentMode.SELF_FENCED
        self.manager.step_down()
        self.parts.journal.record(
            "self_fence", host=self.host,
            text=f"{reason}; stopping {len(running)} VM{'s' if len(running) != 1 else ''}")
        self.parts.alerts.send("critical", f"{self.host} fenced itself: {reason}",
                               host=self.host)

    # ----------------------------------------------------------------- VMs
    def _reconcile(self) -> None:
        """Run exactly the VMs the store assigns to this host (starting only after a fresh
        read in this cycle; stopping whatever is not ours)."""
        store, hypervisor = self.parts.store, self.parts.hypervisor
        try:
            revision = store.revision()
            if revision != self.owners_revision:
                owners = store.get_prefix(leases.VMS_PREFIX)
                self.owned = {
                    kv.key.split("/")[1]: kv.mod_revision
                    for kv in owners.items
                    if kv.key.endswith("/owner") and kv.value.get("host") == self.host
                }
                self.owners_revision = owners.revision
        except StoreUnavailable:
            return
        try:
            running = hypervisor.list_running()
        except HypervisorError as exc:
            self.parts.journal.record("hypervisor_error", host=self.host, text=str(exc))
            return
        for vm in sorted(running):
            if vm not in self.owned:
                self._stop(vm, running[vm])
        for vm, token in sorted(self.owned.items()):
            if running.get(vm) != token:
                self._start(vm, token, restarted=vm in running)

    def _start(self, vm: str, token: int, *, restarted: bool) -> None:
        try:
            self.parts.hypervisor.start(vm, token)
        except HypervisorError as exc:
            self.parts.journal.record("vm_start_failed", host=self.host, vm=vm, text=str(exc))
            return
        if not restarted:
            self.parts.journal.record(
                "vm_started", host=self.host, vm=vm, text=f"{vm} started on {self.host} "
                                                          f"(token {token})")

    def _stop(self, vm: str, token: int, why: str = "its lease is no longer held here"
              ) -> None:
        try:
            self.parts.hypervisor.stop(vm, token)
        except HypervisorError as exc:
            self.parts.journal.record("vm_stop_failed", host=self.host, vm=vm, text=str(exc))
            return
        self.parts.journal.record("vm_stopped", host=self.host, vm=vm,
                                  text=f"{vm} stopped on {self.host}: {why}")

    # ----------------------------------------------------------------- clean stop
    def shutdown(self, *, reboot: bool) -> None:
        """A clean shutdown or reboot: stop this host's VMs, then tell the store (guarded by
        our own lease) that this incarnation is offline with no VM running, release the lease
        and close the watchdog. If the store can not be told, the cluster treats the host as
        failed and proves it fenced the usual way: slower, never unsafe."""
        reason = "reboot" if reboot else "shutdown"
        try:
            running = sorted(self.parts.hypervisor.list_running())
        except HypervisorError:
            running = []
        for vm in running:
            self._stop(vm, 0, why=f"clean {reason} of {self.host}")
        self.manager.step_down()
        told = False
        if self.lease_id is not None and not running_after(self.parts.hypervisor):
            try:
                result = self.parts.store.txn(
                    [Compare(leases.host_lease_key(self.host), "lease", self.lease_id)],
                    [Put(leases.host_offline_key(self.host),
                         {"incarnation": self.incarnation, "reason": reason})])
                self.parts.store.revoke(self.lease_id)
                told = result.succeeded
            except StoreUnavailable:
                told = False
        if self.watchdog_armed:
            self.parts.watchdog.disarm()
        self.mode = AgentMode.STOPPED
        self.parts.journal.record(
            "host_shutdown", host=self.host,
            text=f"clean {reason} of {self.host}, {len(running)} VM(s) stopped"
                 + ("" if told else "; the store could not be told: peers will fence it"))

    # ----------------------------------------------------------------- views
    def local_state(self) -> str:
        """This host's own view of itself, for status and the simulator's host states."""
        if self.mode == AgentMode.SELF_FENCED:
            return "fenced"
        if self.mode == AgentMode.STOPPED:
            return "offline"
        if self.mode == AgentMode.WAITING_FOR_QUORUM:
            return "waiting_for_quorum"
        return "jeopardy" if self.membership.in_jeopardy() else "online"

    def _status_line(self, now: float) -> str:
        age = "-" if self.last_renewal_sent is None else f"{now - self.last_renewal_sent:.1f}s"
        role = " leader" if self.manager.is_leader else ""
        return (f"{self.host}: {self.local_state()}{role}, lease age {age}, "
                f"{len(self.owned)} VM(s) assigned")
