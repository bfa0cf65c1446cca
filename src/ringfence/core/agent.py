"""The host agent's decision cycle: heartbeats, probes, host lease, failsafe, self-fence, VMs.

One `Agent` per host. `tick()` runs one cycle (every `heartbeat_interval`) and returns a status
string; it never blocks on anything but the injected parts, and it never reads a wall clock.

Failure semantics, in the order a cycle meets them:

- Store unreachable at start: the agent starts nothing and reports `waiting_for_quorum`
  (cold start waits for quorum). A host that left a failsafe cluster cleanly also waits until
  it hears again the hosts it left (its promise, kept in `LocalState`).
- A store that answers but is not this cluster's store (empty, another identity, rolled back:
  `core.identity`, `store.identity`): refused, journaled (`store_foreign`) and alerted; to
  the agent it is an unreachable store, never one in which its lease is gone.
- Store unreachable later: the agent keeps its VMs while its last successful renewal is
  younger than `host_lease_ttl - safety_margin` (see `core.leases`). After that it keeps them
  only in failsafe (`core.failsafe`: everyone heard, nobody reaches the store); otherwise it
  destroys them at once, stops petting the watchdog and reports `self_fenced`. The watchdog then
  resets the host; the agent never tries to undo a self-fence.
- The store says our lease is gone: the same self-fence, at once.
- A hypervisor error: journaled; the next cycle re-lists the hypervisor and tries again.
- The watchdog is petted only at the end of a cycle in which the lease is fresh, or failsafe
  holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from ringfence.config import ClusterConfig
from ringfence.core import leases
from ringfence.core.event_text import render
from ringfence.core.events import Fact
from ringfence.core.failsafe import (
    LeaseReporter,
    SentTimes,
    failsafe_view,
    heard_fresh,
    store_news_window,
    vouched_until,
)
from ringfence.core.forced import HELD_KEY, ForcedStarts
from ringfence.core.health import HealthMonitor
from ringfence.core.identity import IDENTITY_MEMORY, Remembered, judge
from ringfence.core.manager import Manager
from ringfence.core.membership import Membership, PeerChange, PeerState
from ringfence.core.ports import (
    FLAG_FAILSAFE,
    FLAG_LEAVING,
    FLAG_SAYS_FRESHNESS,
    FLAG_STORE_FRESH,
    FLAG_STORE_OK,
    AlertSink,
    Clock,
    GuestChecks,
    Journal,
    LocalState,
    Probes,
    StoreWatch,
    Transport,
)
from ringfence.core.topology import Topology
from ringfence.core.vms import VmKeeper
from ringfence.fence.base import FenceAgent, Watchdog
from ringfence.hypervisor.base import Hypervisor, HypervisorError
from ringfence.store.base import Compare, Delete, Put, Store, StoreUnavailable
from ringfence.store.identity import IDENTITY_KEY, IdentifiedStore, IdentityRef, read_identity

# Timers are checked once per cycle; float noise of a microsecond must not cost a cycle.
TIMER_SLACK = 1e-6
PROBE_INTERVAL = 1.0
DRAIN_TIMEOUT = 120.0  # shutdown policy `migrate`: how long a shutdown waits for the drain
ALERT_HOLD = 600.0  # a flapping link alerts once per peer in this long, not at every flap
DEPARTURE_KEY = "failsafe_departure"
REMEMBER_EVERY = 30.0  # how often the highest revision seen is written to the host's disk
OVERRUN_HOLD = 10.0  # a slow decision cycle is journaled at most this often
GAP_CYCLES = 3  # heartbeat cycles missed before the agent says it did not run
REVISION_REFRESH = 1.0  # with a store watch, the revision is read at least this often

_T = TypeVar("_T")


class AgentMode(StrEnum):
    WAITING_FOR_QUORUM = "waiting_for_quorum"
    ACTIVE = "active"
    SELF_FENCED = "self_fenced"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RevisionSeen:
    """The store's revision as last read by the decision cycle."""

    writes: int  # this host's writes through its store when it was read
    revision: int
    read_at: float  # the clock before the read was sent
    cycle: int  # the decision cycle that read it


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
    probes: Probes | None = None
    guest_checks: GuestChecks | None = None
    local_state: LocalState | None = None
    new_id: Callable[[], str] | None = None  # random ids (a store identity at bootstrap)
    lease_store: Store | None = None  # the lease cycle's own connection (default: `store`)
    service_watchdog: Watchdog | None = None  # systemd's (WatchdogSec=), beside the hardware one
    store_watch: StoreWatch | None = None  # when to re-read the store (`Agent.revision`)


class Agent:
    def __init__(
        self,
        config: ClusterConfig,
        host: str,
        parts: AgentParts,
        topology: Topology | None = None,
        *,
        bootstrap: bool = False,
    ) -> None:
        self.config = config
        self.host = host
        # Every store call of this host proves the store is the one it joined.
        self.identity = IdentityRef()
        self.store = IdentifiedStore(parts.store, self.identity, on_foreign=self._store_foreign,
                                     clock=parts.clock.now)
        self.parts = dataclasses.replace(parts, store=self.store)
        # The lease cycle's store: its own connection where the runtime gives one, so that a
        # slow decision cycle's call never queues a renewal behind it. Registration
        # (`_register`, with `_join_store`, which needs it unidentified) runs over it too.
        if parts.lease_store is None:
            self.raw_lease_store, self.lease_store = parts.store, self.store
        else:
            self.raw_lease_store = parts.lease_store
            self.lease_store = IdentifiedStore(parts.lease_store, self.identity,
                                               on_foreign=self._store_foreign,
                                               clock=parts.clock.now)
        self.bootstrap = bootstrap
        self.foreign_said: str | None = None
        self.store_conflict: tuple[str, ...] = ()  # peers heard that joined another store
        self.remembered_at = float("-inf")
        self.timing = config.timing
        self.topology = topology or Topology.from_config(config)
        self.membership = Membership(
            self.topology, host, config.timing.effective_heartbeat_timeout
        )
        self.health = HealthMonitor(config, host)
        self.mode = AgentMode.WAITING_FOR_QUORUM
        self.lease_id: int | None = None
        self.incarnation = 0
        self.last_renewal_sent: float | None = None  # send time of the last renewal that worked
        self.next_renewal = 0.0
        self.next_probe = 0.0
        self.store_lost_since: float | None = None
        self.failsafe = False
        self.fresh_seen: set[str] = set()  # peers heard with fresh store news in this failsafe
        self.departed: set[str] = set()  # hosts that left cleanly while the store was lost
        self.news = False  # a peer changed state since `take_news` was last asked
        self.sent = SentTimes()  # our heartbeats' send times, for the peers' lease reports
        self.vouched_said: str | None = None  # in failsafe: the voucher last journaled
        self.published_health: tuple[str, tuple[str, ...], bool] | None = None
        self.published_links: tuple[int, str] | None = None
        self.jeopardy_alerted: dict[str, float] = {}
        self.watchdog_armed = False
        self.said_waiting = False
        self.status = "starting"
        self.want_status = True  # the simulator, which never reads it, turns it off
        self.shutdown_after_drain: tuple[bool, float] | None = None  # (reboot, deadline)
        self.stopping: tuple[bool, int] | None = None  # a clean stop under way: (reboot, VMs)
        self.took: dict[str, float] = {}  # what the current decision cycle spent its time on
        self.cycles = 0  # decision cycles begun
        self.revision_seen: RevisionSeen | None = None  # the last revision read
        self.overrun_said = float("-inf")
        self.last_beat: float | None = None
        self.vms = VmKeeper(self)
        self.forced = ForcedStarts(self)
        self.manager = Manager(config, host, self.parts, self)
        self.reporter = LeaseReporter(self.membership, self.manager.host_names, host)

    # ----------------------------------------------------------------- the two cycles
    def beat(self) -> None:
        """The heartbeat cycle, every `heartbeat_interval`, whatever the store is doing: it
        never calls the store. Heartbeats in and out, the lease guard (a stale lease means
        failsafe or a self-fence, at once), and the watchdog pet on a lease that is fresh
        at the moment of the pet."""
        if self.mode == AgentMode.STOPPED:
            return
        if self.mode == AgentMode.SELF_FENCED:
            self.vms.destroy_leftovers()
            return
        now = self.parts.clock.now()
        self._note_gap(now)
        self._exchange_heartbeats(now)
        if self.mode == AgentMode.ACTIVE:
            self._guard(now)
            if self.mode == AgentMode.ACTIVE and self._near_deadline(now):
                self.vms.abort_migrations(self._staleness_reason(now))
        self._pet()

    def _note_gap(self, now: float) -> None:
        """A heartbeat cycle that comes much later than its slot: this agent did not run (the
        host hung, or the agent process was stopped). Its guests may have been frozen as long;
        say so, with the length, for the incident tooling."""
        last, self.last_beat = self.last_beat, now
        if last is None:
            return
        gap = now - last
        if gap > GAP_CYCLES * self.timing.heartbeat_interval:
            self.parts.journal.record("execution_gap", host=self.host, duration=gap)

    def tick(self) -> str:
        """The decision cycle: probes, forced starts, the lease guard, the VMs and the
        manager (the host lease itself is the lease cycle's: `keep_leases`). Its store
        and hypervisor calls may take time (they are bounded); heartbeats and the watchdog do
        not wait for it (`beat`)."""
        now = self.parts.clock.now()
        if self.mode in (AgentMode.SELF_FENCED, AgentMode.STOPPED):
            self.status = f"{self.host}: {self.mode}"
            return self.status
        self.took.clear()
        self.cycles += 1
        self._timed("probes", lambda: self._probe(now))
        self._timed("forced starts", lambda: self.forced.tick(now))
        if self._claims_forced():
            self._timed("forced claims", self.forced.claim)
        if self.mode == AgentMode.ACTIVE:
            self._guard(self.parts.clock.now())
        if self.stopping is not None:
            self._timed("clean stop", lambda: self._continue_shutdown(now))
        elif self.mode == AgentMode.ACTIVE and not self.failsafe:
            self._timed("lease reports", self._report_leases)
            fresh_read = self._timed("store read", self.vms.refresh)
            self._timed("publishing", self._publish)
            self._timed("VMs", lambda: self.vms.reconcile(
                now, fresh_read=fresh_read, unfit=self._unfit(),
                may_start=self._may_start_vms() and not self.store_conflict))
            if not self.store_conflict and self.mode == AgentMode.ACTIVE:
                self._timed("manager", lambda: self.manager.tick(now))
        self._pet()
        self._timed("guest checks", lambda: self.vms.verify(now))
        if (self.shutdown_after_drain is not None and self.mode == AgentMode.ACTIVE
                and self.stopping is None):
            reboot, deadline = self.shutdown_after_drain
            if (not self.vms.owned and not self.vms.any_running()) or now >= deadline:
                self.shutdown(reboot=reboot)
        self._check_overrun(now)
        if self.want_status:
            self.status = self._status_line(now)
        return self.status

    def take_news(self) -> bool:
        """Did a heartbeat cycle see a peer change state (a link or a host lost or back)
        since the last call? The real runtime then runs the decision cycle at once rather
        than at its next slot, so that a lost host is assessed (and fenced) up to a cycle
        sooner. The simulator runs its cycles on their slots and never asks."""
        news, self.news = self.news, False
        return news

    def take_own_writes(self) -> bool:
        """Did this host's manager write records (a VM recovered or moved, a host fenced)
        since the last call? The real runtime then runs one more decision cycle at once, so
        that this host's own VM keeper acts on them without waiting for its next slot."""
        wrote, self.manager.wrote = self.manager.wrote, False
        return wrote

    def revision(self) -> int:
        """The store's revision, asked once per decision cycle rather than by each of its
        parts (the VM keeper and the manager each use it to skip re-reading an unchanged
        store): asked again only after this host wrote through its store, since its own write
        moved the revision. A revision another host moved since is seen one cycle later,
        exactly as if the cycle had begun a moment earlier. With a store watch
        (`AgentParts.store_watch`) a later cycle asks again only when the watch told of a
        newer revision, or when the last read is `REVISION_REFRESH` old: a watch that lags
        makes the cycle see others' writes up to that much later, never miss them. Raises
        StoreUnavailable."""
        writes = self.store.writes
        seen = self.revision_seen
        if seen is not None and seen.writes == writes and (
                seen.cycle == self.cycles or self._watch_vouches(seen)):
            return seen.revision
        now = self.parts.clock.now()  # before the call: the read is at least this fresh
        revision = self.store.revision()
        self.revision_seen = RevisionSeen(writes, revision, now, self.cycles)
        return revision

    def _watch_vouches(self, seen: RevisionSeen) -> bool:
        """Does the store's watch say that nothing changed since `seen` was read, and is that
        read recent enough to go on trusting it without asking?"""
        watch = self.parts.store_watch
        if watch is None:
            return False
        latest = watch.seen()
        refresh = max(REVISION_REFRESH, self.timing.heartbeat_interval)
        return (latest is not None and latest <= seen.revision
                and self.parts.clock.now() - seen.read_at < refresh)

    def keep_leases(self) -> None:
        """The lease cycle: take the host lease while this host has none (`_register`), and
        renew it when it is due, and nothing else, so that a slow decision cycle never lets
        the host lease run out (`next_lease_due`). Registration is here rather than in the
        decision cycle because its calls wait their whole deadline while the store has no
        quorum: the decision cycle meanwhile keeps picking up operator requests and polling
        the fences of a forced start without quorum (issue 11: a forced start waited 1.5 s per
        registration attempt)."""
        if self._wants_lease():
            self._register(self.parts.clock.now())
            return
        if self.mode != AgentMode.ACTIVE or self.lease_id is None:
            return
        if self.parts.clock.now() >= self.next_renewal - TIMER_SLACK:
            self._renew()

    def _claims_forced(self) -> bool:
        """VMs forced on here without quorum, and a lease and a store to claim them with.
        Claims are the decision cycle's, never the lease cycle's, although the lease cycle is
        the one that (re)gains the store: the decision cycle is the one that starts a forced
        VM, and a claim run beside it could miss a VM it was starting at that moment, which
        would then run here lease-less while the manager recovers it elsewhere."""
        return (bool(self.vms.forced) and self.mode == AgentMode.ACTIVE
                and self.lease_id is not None and self.store_lost_since is None
                and not self.failsafe and self.stopping is None)

    def _wants_lease(self) -> bool:
        """Waiting for quorum, with no lease and no clean stop under way."""
        return (self.mode == AgentMode.WAITING_FOR_QUORUM and self.lease_id is None
                and self.stopping is None)

    def next_lease_due(self) -> float:
        """When `keep_leases` has work next (on this host's clock): -inf (at once) while this
        host waits to register; inf: nothing to keep. Not "now": a caller that read its clock
        a moment before would find it not due yet."""
        if self._wants_lease():
            return float("-inf")
        if self.mode != AgentMode.ACTIVE or self.lease_id is None:
            return float("inf")
        return self.next_renewal

    def _timed(self, what: str, work: Callable[[], _T]) -> _T:
        """Run one part of the cycle, keeping how long it took (for `cycle_overrun`)."""
        started = self.parts.clock.now()
        try:
            return work()
        finally:
            self.took[what] = self.took.get(what, 0.0) + self.parts.clock.now() - started

    def _check_overrun(self, started: float) -> None:
        """A cycle longer than its budget is journaled with what took the time (at most once
        per `OVERRUN_HOLD`): heartbeats and the watchdog never wait for it, but decisions do."""
        took = self.parts.clock.now() - started
        if took <= self.timing.effective_cycle_budget:
            return
        now = self.parts.clock.now()
        if now - self.overrun_said < OVERRUN_HOLD:
            return
        self.overrun_said = now
        parts = sorted(self.took.items(), key=lambda kv: -kv[1])[:3]
        detail = ", ".join(f"{what} {seconds:.2f}s" for what, seconds in parts if seconds > 0)
        self.parts.journal.record("cycle_overrun", host=self.host, duration=took,
                                  limit=self.timing.effective_cycle_budget,
                                  detail=detail or None)

    def _publish(self) -> None:
        self._publish_health()
        self._publish_links()

    def _near_deadline(self, now: float) -> bool:
        """Close enough to the self-fence deadline that a live migration out of here must be
        given up now, so that it is over (aborted) when the deadline comes."""
        if self.last_renewal_sent is None or self.failsafe:
            return False
        margin = 2 * self.timing.heartbeat_interval
        return not leases.lease_is_fresh(now - self.last_renewal_sent + margin, self.timing)

    def _pet(self) -> None:
        """Pet the watchdog only on fresh proof: the clock read again now, and the last
        renewal that worked younger than `host_lease_ttl - safety_margin` at this moment (or
        failsafe holding). Patroni's rule: the pet follows the proof, never a memory of it."""
        service = self.parts.service_watchdog
        if self.mode != AgentMode.ACTIVE:
            if service is not None and self.mode == AgentMode.WAITING_FOR_QUORUM:
                service.pet()  # alive and holding nothing: systemd must not kill it
            return
        now = self.parts.clock.now()
        if self._lease_fresh(now) or (self.failsafe and now < self._failsafe_until()[0]):
            self.parts.watchdog.pet()
            if service is not None:
                service.pet()

    def _failsafe_until(self) -> tuple[float, str | None, str | None]:
        """Until when (own clock) failsafe lets this host keep its VMs and pet its watchdog,
        if that is not forever why, and the peer whose report gives the time (`core.failsafe`):
        forever while nobody is missing and nobody reaches the store; once a peer reaches it,
        until the latest deadline that a peer's report about our lease gives. A host not yet
        in failsafe has such a report only from a peer that reached the store again while we
        had no fresh news of it either (`LeaseReporter.uncertain`): the store was lost for
        both, not only for us."""
        view = failsafe_view(self.membership, self.manager.host_names, self.host,
                             self.departed, self.fresh_seen if self.failsafe else None)
        if view.broken is not None:
            return float("-inf"), view.broken, None
        if not view.back:
            return float("inf"), None, None
        reaches = f"{', '.join(view.back)} {'reach' if len(view.back) > 1 else 'reaches'} " \
                  f"the store"
        mine = self._fingerprint()
        reports = {peer: report for peer, report in self.membership.reports.items()
                   if peer in view.back and self.membership.store_of(peer) == mine}
        until, peer = vouched_until(reports, self.lease_id, self.sent, self.timing)
        if peer is None:
            if not self.failsafe:
                return float("-inf"), reaches, None
            return until, f"{reaches}, and none vouches for {self.host}'s lease there", None
        return until, f"{reaches}; {peer} vouched for {self.host}'s lease only so long", peer

    def _report_leases(self) -> None:
        """Tell the peers in failsafe how long their leases live in the store (`core.failsafe`):
        only with a fresh lease of our own, which says the store answers us."""
        if not self._lease_fresh(self.parts.clock.now()):
            return
        # On StoreUnavailable the reports made so far stay valid; the next cycle tries again.
        with contextlib.suppress(StoreUnavailable):
            self.reporter.refresh(self.parts.store, self._fingerprint())

    def _guard(self, now: float) -> None:
        """Fresh lease: carry on. Stale: failsafe if it holds, else self-fence."""
        if self._lease_fresh(now):
            if self.failsafe:
                self.failsafe = False
                self.vouched_said = None
                self.parts.journal.record("failsafe_left", host=self.host, cause="store_back")
            return
        until, blocker, voucher = self._failsafe_until()
        if now < until:
            if self.failsafe and voucher is not None:
                self._journal_vouched(now, until, voucher)
                return
            if not self.failsafe:
                self.failsafe = True
                self.fresh_seen = set()
                self.parts.journal.record("failsafe_entered", host=self.host,
                                          count=len(self.vms.seen), peer=voucher)
                self.parts.alerts.send("critical", f"store lost: {self.host} in failsafe",
                                       host=self.host)
                self.vms.abort_migrations("failsafe: nothing moves without the store")
            return
        if self.failsafe:
            self.failsafe = False
            self.parts.journal.record("failsafe_left", host=self.host, cause="broken",
                                      reason=blocker)
        self._self_fence(now, "store_unreachable", blocker)

    def _journal_vouched(self, now: float, until: float, voucher: str) -> None:
        """Once per voucher: a peer reaches the store and vouches for our lease; we keep our
        VMs (petting) until we reach the store ourselves or the vouched time runs out."""
        if self.vouched_said == voucher:
            return
        self.vouched_said = voucher
        self.parts.journal.record("failsafe_vouched", host=self.host, peer=voucher,
                                  duration=until - now)

    # ----------------------------------------------------------------- probes
    def _probe(self, now: float) -> None:
        if self.parts.probes is None or now < self.next_probe - TIMER_SLACK:
            return
        self.next_probe = now + PROBE_INTERVAL
        for event in self.health.assess(now, self.parts.probes.read()):
            self.parts.journal.record(event.kind, **event.fields)
            if event.kind in ("host_ineligible", "host_degraded", "link_flapping",
                              "storage_unwritable", "link_down"):
                self.parts.alerts.send("warning", render(Fact(event.kind, self.host,
                                                              **event.fields)),
                                       host=self.host)

    def _may_start_vms(self) -> bool:
        return self.parts.probes is None or self.health.may_start_vms

    def _unfit(self) -> str | None:
        assessment = self.health.assessment
        return "; ".join(assessment.reasons) if assessment.state == "ineligible" else None

    def _publish_health(self) -> None:
        """Tell the manager (through the store, under our lease) whether we may get VMs. Until
        a full probe round has passed (`HealthMonitor.settled`) the record says `settled:
        false`, and the manager places nothing here."""
        assessment = self.health.assessment
        settled = self.parts.probes is None or self.health.settled
        current = (assessment.state, assessment.reasons, settled)
        if current == self.published_health or self.lease_id is None:
            return
        if self._put_under_lease(leases.host_health_key(self.host), {
                "state": assessment.state, "reasons": list(assessment.reasons),
                "causes": list(assessment.causes), "settled": settled,
                "incarnation": self.incarnation}):
            self.published_health = current

    def _put_under_lease(self, key: str, value: dict[str, object]) -> bool:
        """Write one of our own keys, attached to our lease and only while we hold it."""
        assert self.lease_id is not None
        try:
            result = self.parts.store.txn(
                [Compare(leases.host_lease_key(self.host), "lease", self.lease_id)],
                [Put(key, value, self.lease_id)])
        except StoreUnavailable:
            return False
        return result.succeeded

    def _publish_links(self) -> None:
        """Our own view of every peer's links, for `ringfence status` and the dashboard.
        Written only when it changes."""
        if self.lease_id is None:
            return
        published = (self.membership.version, self.local_state())
        if published == self.published_links:
            return
        peers: dict[str, object] = {}
        for peer in self.manager.host_names:
            if peer == self.host:
                continue
            alive, dead = self.membership.links_of(peer)
            peers[peer] = {"state": str(self.membership.state(peer)), "alive": list(alive),
                           "dead": list(dead)}
        view: dict[str, object] = {"state": published[1], "peers": peers,
                                   "incarnation": self.incarnation}
        if self._put_under_lease(leases.host_links_key(self.host), view):
            self.published_links = published

    # ----------------------------------------------------------------- heartbeats
    def _flags(self, now: float) -> int:
        flags = FLAG_SAYS_FRESHNESS
        if self.lease_id is None or self.store_lost_since is not None:
            # At every heartbeat while the store is lost, not once: a report tried (and
            # failed) meanwhile must not count as tried when the store comes back.
            self.reporter.store_lost()
        elif not self.reporter.owed(self._fingerprint()):
            flags |= FLAG_STORE_OK  # after the first lease reports (`LeaseReporter`)
            if self._store_news_fresh(now):
                flags |= FLAG_STORE_FRESH
        if self.failsafe:
            flags |= FLAG_FAILSAFE
        return flags

    def _store_news_fresh(self, now: float) -> bool:
        """Did the store answer a call of ours sent within `store_news_window`?"""
        answered = [t for t in (self.store.answered, self.lease_store.answered) if t is not None]
        return bool(answered) and now - max(answered) < store_news_window(self.timing)

    def _exchange_heartbeats(self, now: float) -> None:
        changes = self.membership.observe(now, self.parts.transport.receive())
        for change in changes:
            self._journal_peer_change(change, now)
        self.news = self.news or bool(changes)
        if self.failsafe:
            self.fresh_seen |= heard_fresh(self.membership, self.manager.host_names, self.host)
        self._note_departures()
        seq = self.parts.transport.send(self.membership.heard(), self._flags(now),
                                        self._fingerprint(), self.reporter.reports or None)
        self.sent.note(seq, now)  # `now` was read before the send: never later than it
        self._check_other_stores()

    def _note_departures(self) -> None:
        """A host that says it leaves while the store is lost no longer counts for failsafe
        (`core.failsafe`). One heard again without saying so has come back (it may reach the
        store and act): it counts again from then on."""
        for host in self.manager.host_names:
            if host == self.host:
                continue
            leaving = self.membership.flags_of(host) & FLAG_LEAVING
            if leaving and (self.store_lost_since is not None or self.lease_id is None):
                self.departed.add(host)
            elif not leaving and self.membership.hears(host):
                self.departed.discard(host)

    def _fingerprint(self) -> int:
        identity = self.identity.identity
        return identity.fingerprint if identity is not None else 0

    def _check_other_stores(self) -> None:
        """Peers we hear that joined another store than ours: two stores live at once (a
        store re-bootstrapped while the old one still serves some hosts). Nothing can be
        proven across two stores, so while that lasts this host starts and moves nothing."""
        mine = self._fingerprint()
        others = self.membership.other_stores(mine) if mine else []
        names = tuple(sorted(peer for peer, _ in others))
        if names and names != self.store_conflict:
            fact = Fact("store_conflict", self.host, host=self.host, peers=names,
                        detail=self.identity.identity.short() if self.identity.identity else None)
            self.parts.journal.record("store_conflict", host=self.host, peers=names,
                                      detail=fact.detail)
            self.parts.alerts.send("critical", render(fact), host=self.host)
        self.store_conflict = names

    def _journal_peer_change(self, change: PeerChange, now: float) -> None:
        journal, me = self.parts.journal, self.host
        if change.new == PeerState.LOST:
            journal.record("heartbeat_lost", host=change.peer, links=change.dead_links,
                           duration=self.membership.timeout)
        elif change.new == PeerState.JEOPARDY:
            fields: dict[str, Any] = {"host": me, "peer": change.peer,
                                      "links": change.alive_links,
                                      "lost_links": change.dead_links}
            journal.record("jeopardy", **fields)
            text = render(Fact("jeopardy", me, **fields))
            last = self.jeopardy_alerted.get(change.peer)
            if last is None or now - last >= ALERT_HOLD:
                self.jeopardy_alerted[change.peer] = now
                self.parts.alerts.send("warning", f"heartbeat link lost: {text}", host=me)
        elif change.new == PeerState.UP and change.old in (PeerState.JEOPARDY, PeerState.LOST):
            journal.record("heartbeat_restored", host=change.peer)

    # ----------------------------------------------------------------- host lease
    def _rejoin_blocked(self) -> bool:
        """A host that left a failsafe cluster promised not to rejoin before it hears the
        hosts it left (they may still run VMs without the store)."""
        local = self.parts.local_state
        promise = local.get(DEPARTURE_KEY) if local else None
        if not promise or local is None:
            return False
        waiting = [str(h) for h in promise.get("hosts", []) if not self.membership.hears(str(h))]
        if not waiting:
            local.put(DEPARTURE_KEY, None)
            self.parts.journal.record("rejoin_allowed", host=self.host)
            return False
        if not self.said_waiting:
            self.said_waiting = True
            self.parts.journal.record("rejoin_blocked", host=self.host, peers=tuple(waiting))
        return True

    def _register(self, now: float) -> None:
        """Take a fresh host lease: the start of a new incarnation of this host. The
        watchdog is armed first: a host that can not arm it never holds a lease (it could not
        be trusted to stop its VMs), and says so."""
        if self._rejoin_blocked():
            return
        store = self.lease_store
        try:
            if not self._join_store():
                return
            info = store.get(leases.host_info_key(self.host))
            if not self._arm_watchdog():  # armed only once the store answers
                return
            incarnation = int(info.value.get("incarnation", 0)) + 1 if info else 1
            granted = self.parts.clock.now()  # the lease's age counts from its request
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
            drained = store.get(leases.host_maintenance_key(self.host))
            if result.succeeded and drained and drained.value.get("reason") == "shutdown":
                # Drained for a reboot (shutdown policy `migrate`): back in service, and the
                # drained VMs come home.
                store.txn([Compare.unchanged(leases.host_maintenance_key(self.host),
                                             drained.mod_revision)],
                          [Delete(leases.host_maintenance_key(self.host))])
        except StoreUnavailable:
            self._disarm_unused()
            if not self.said_waiting:
                self.said_waiting = True
                self.parts.journal.record("waiting_for_quorum", host=self.host,
                                          cause="no_quorum")
            return
        if not result.succeeded:
            self._disarm_unused()
            return  # someone else registered this host name meanwhile: retry next cycle
        self.lease_id, self.incarnation = lease, incarnation
        self.last_renewal_sent = granted
        self.next_renewal = granted + leases.renewal_interval(self.timing)
        self.mode = AgentMode.ACTIVE
        self.parts.journal.record("host_joined", host=self.host, incarnation=incarnation)

    def _join_store(self) -> bool:
        """Make sure the store is this cluster's store (see `core.identity`): join it,
        bootstrap it, wait, or refuse it. True once joined. Raises StoreUnavailable."""
        if self.identity.identity is not None:
            return True
        local = self.parts.local_state
        remembered = Remembered.parse(local.get(IDENTITY_MEMORY) if local else None)
        raw, found = read_identity(self.raw_lease_store)
        revision = self.raw_lease_store.revision()
        hosts_joined = False
        new_id = None
        if raw is None and remembered.identity is None:
            hosts_joined = bool(self.raw_lease_store.get_prefix(leases.HOSTS_PREFIX).items)
            new_id = self.parts.new_id() if self.parts.new_id is not None else None
        verdict = judge(cluster=self.config.name, found=found, found_raw=raw is not None,
                        store_revision=revision, hosts_joined=hosts_joined,
                        remembered=remembered, bootstrap_flag=self.bootstrap,
                        named_bootstrap=self.config.store.bootstrap, host=self.host,
                        new_id=new_id)
        if verdict.action == "refuse":
            self._store_foreign(verdict.reason)
            return False
        if verdict.action == "wait":
            if not self.said_waiting:
                self.said_waiting = True
                self.parts.journal.record("waiting_for_quorum", host=self.host,
                                          cause="identity", reason=verdict.reason)
            return False
        identity = verdict.identity
        assert identity is not None
        if verdict.action == "bootstrap":
            made = self.raw_lease_store.txn([Compare.absent(IDENTITY_KEY)],
                                      [Put(IDENTITY_KEY, identity.value())])
            if not made.succeeded:
                return False  # another host bootstrapped it meanwhile: judge again
            revision = made.revision
            self.parts.journal.record("store_bootstrapped", host=self.host,
                                      reason=identity.cluster, detail=identity.short())
        self.identity.set(identity, max(revision, remembered.revision))
        self.foreign_said = None
        self._remember()
        return True

    def _remember(self) -> None:
        """Keep the joined identity and the highest revision seen on this host's disk."""
        local = self.parts.local_state
        if local is None or self.identity.identity is None:
            return
        local.put(IDENTITY_MEMORY, Remembered(self.identity.identity,
                                              self.identity.max_revision).value())

    def _store_foreign(self, reason: str) -> None:
        """The store answers but is not ours: say so once per reason, loudly."""
        if reason == self.foreign_said:
            return
        self.foreign_said = reason
        self.parts.journal.record("store_foreign", host=self.host, reason=reason)
        self.parts.alerts.send("critical", f"{self.host}: not this cluster's store: {reason}",
                               host=self.host)

    def _arm_watchdog(self) -> bool:
        if self.watchdog_armed:
            return True
        try:
            self.parts.watchdog.arm(self.timing.watchdog_timeout)
        except OSError as exc:
            if not self.said_waiting:
                self.said_waiting = True
                text = f"{self.host} can not arm its watchdog ({exc}): it joins no cluster"
                self.parts.journal.record("watchdog_missing", host=self.host, reason=text)
                self.parts.alerts.send("critical", text, host=self.host)
            return False
        self.watchdog_armed = True
        return True

    def _disarm_unused(self) -> None:
        """Registration failed after arming: we hold no lease and run nothing, so close the
        watchdog cleanly rather than let it reset a host that is only waiting."""
        if self.watchdog_armed and self.lease_id is None:
            self.parts.watchdog.disarm()
            self.watchdog_armed = False

    def _renew(self) -> None:
        """Keep the host lease alive. Its age is counted from when this request was *sent*
        (the clock read just before it), so a slow answer only makes it look older."""
        assert self.lease_id is not None
        clock = self.parts.clock
        sent = clock.now()
        try:
            alive = self.lease_store.keepalive(self.lease_id)
        except StoreUnavailable:
            now = clock.now()
            if self.store_lost_since is None:
                self.store_lost_since = now
                self.parts.journal.record("quorum_lost", host=self.host)
            self.next_renewal = now + self.timing.heartbeat_interval
            return
        now = clock.now()
        if not alive:
            self.parts.journal.record("lease_lost", host=self.host)
            self._self_fence(now, "lease_gone")
            return
        if self.store_lost_since is not None:
            lost_for = now - self.store_lost_since
            self.parts.journal.record("quorum_gained", host=self.host, duration=lost_for)
            self.store_lost_since = None
            # A report the decision cycle tried (and failed) after the last heartbeat's
            # `store_lost` must not count as tried either: owe every first attempt again.
            self.reporter.returned()
        self.foreign_said = None
        if self.mode != AgentMode.ACTIVE:
            return  # self-fenced while the call was under way (the heartbeat cycle's guard)
        self.last_renewal_sent = sent
        self.next_renewal = sent + leases.renewal_interval(self.timing)
        self._pet()  # right after a fresh proof of the lease
        if now - self.remembered_at >= REMEMBER_EVERY:
            self.remembered_at = now
            self._remember()

    def _lease_fresh(self, now: float) -> bool:
        return self.last_renewal_sent is not None and leases.lease_is_fresh(
            now - self.last_renewal_sent, self.timing)

    def _staleness_reason(self, now: float) -> str:
        age = now - (self.last_renewal_sent or now)
        return f"store unreachable, lease last renewed {age:.1f}s ago"

    def _self_fence(self, now: float, cause: str, blocker: str | None = None) -> None:
        """Stop every VM at once and stop petting: the watchdog finishes the job. The mode
        changes first, so that no other cycle starts anything from here on. `cause`:
        `store_unreachable` (the lease went stale; `blocker` says why failsafe could not
        hold) or `lease_gone` (the store dropped it)."""
        self.mode = AgentMode.SELF_FENCED
        self.failsafe = False
        running = self.vms.destroy_all()
        if self.parts.local_state is not None:
            self.parts.local_state.put(HELD_KEY, {"vms": running})
        self.manager.step_down()
        age = now - (self.last_renewal_sent or now)
        fields: dict[str, Any] = {"host": self.host, "cause": cause, "duration": age,
                                  "reason": blocker, "count": len(running)}
        self.parts.journal.record("self_fence", **fields)
        why = ("the store no longer holds this host's lease" if cause == "lease_gone" else
               f"store unreachable, lease last renewed {age:.1f}s ago"
               + (f", and {blocker}" if blocker else ""))
        self.parts.alerts.send("critical", f"{self.host} fenced itself: {why}",
                               host=self.host)

    # ----------------------------------------------------------------- operator actions
    def force_start(self, vm: str, operator: str, confirm_down: list[str]) -> str:
        return self.forced.request(self.parts.clock.now(), vm, operator, confirm_down)

    def begin_shutdown(self, *, reboot: bool) -> bool:
        """A clean shutdown or reboot asked by the operating system. With the `migrate`
        shutdown policy the host first drains (as in maintenance) and shuts down when it
        holds no VM, or after `DRAIN_TIMEOUT`. Returns False while that, or the stopping of
        its VMs, goes on (call `tick` until `mode` is `stopped`); True once stopped."""
        if (self.config.policy.shutdown == "migrate" and self.mode == AgentMode.ACTIVE
                and self.lease_id is not None):
            try:
                self.parts.store.txn(
                    [Compare(leases.host_lease_key(self.host), "lease", self.lease_id)],
                    [Put(leases.host_maintenance_key(self.host),
                         {"by": self.host, "reason": "shutdown"})])
            except StoreUnavailable:
                return self.shutdown(reboot=reboot)
            now = self.parts.clock.now()
            self.shutdown_after_drain = (reboot, now + DRAIN_TIMEOUT)
            self.parts.journal.record("host_shutdown", host=self.host, cause="drain",
                                      reason="reboot" if reboot else "shutdown",
                                      planned=True)
            return False
        return self.shutdown(reboot=reboot)

    def shutdown(self, *, reboot: bool) -> bool:
        """A clean shutdown or reboot: stop this host's VMs (jobs: the decision cycle waits
        for them), then tell the store (guarded by our own lease) that this incarnation is
        offline with no VM running, release the lease and close the watchdog. If the store can
        not be told, the last heartbeats say `leaving`, and this host promises (on its own
        disk) not to rejoin before it hears its peers again; the cluster then treats it as
        failed and proves it fenced the usual way: slower, never unsafe. True once stopped
        (at once when every VM stopped at once); else call `tick` until `mode` is stopped."""
        if self.stopping is None:
            try:
                running = len(self.parts.hypervisor.list_running())
            except HypervisorError:
                running = 0
            self.stopping = (reboot, running)
            reason = "reboot" if reboot else "shutdown"
            self.vms.stop_all(self.parts.clock.now(), reason)
            self.manager.resign()
        return self._continue_shutdown(self.parts.clock.now())

    def _continue_shutdown(self, now: float) -> bool:
        """Finish a clean stop once no VM runs. A VM that can not be stopped keeps the
        watchdog armed: closing it would let a VM run on without a lease holder."""
        assert self.stopping is not None
        reboot, stopped = self.stopping
        self.vms.poll_jobs(now)
        if self.vms.any_running():
            return False
        reason = "reboot" if reboot else "shutdown"
        told = False
        if self.lease_id is not None:
            try:
                result = self.parts.store.txn(
                    [Compare(leases.host_lease_key(self.host), "lease", self.lease_id)],
                    [Put(leases.host_offline_key(self.host),
                         {"incarnation": self.incarnation, "reason": reason})])
                self.parts.store.revoke(self.lease_id)
                told = result.succeeded
            except StoreUnavailable:
                told = False
        if not told:
            others = [h for h in self.manager.host_names if h != self.host]
            if self.parts.local_state is not None and self.lease_id is not None:
                self.parts.local_state.put(DEPARTURE_KEY, {"hosts": others})
            self.parts.transport.send(self.membership.heard(), FLAG_LEAVING,
                                      self._fingerprint())
        if self.watchdog_armed:
            self.parts.watchdog.disarm()
        if self.parts.service_watchdog is not None:
            self.parts.service_watchdog.disarm()
        self.mode = AgentMode.STOPPED
        self.parts.journal.record(
            "host_shutdown", host=self.host, cause=reason, reason=reason, count=stopped,
            planned=True, detail=None if told else "the store could not be told")
        return True

    # ----------------------------------------------------------------- views
    def local_state(self) -> str:
        """This host's own view of itself, for status and the simulator's host states."""
        if self.mode == AgentMode.SELF_FENCED:
            return "fenced"
        if self.mode == AgentMode.STOPPED:
            return "offline"
        if self.mode == AgentMode.WAITING_FOR_QUORUM:
            return "waiting_for_quorum"
        health = self.health.assessment.state
        if health == "ineligible":
            return "ineligible"
        if self.membership.in_jeopardy():
            return "jeopardy"
        return "degraded" if health == "degraded" else "online"

    def _status_line(self, now: float) -> str:
        age = "-" if self.last_renewal_sent is None else f"{now - self.last_renewal_sent:.1f}s"
        role = " leader" if self.manager.is_leader else ""
        failsafe = " FAILSAFE" if self.failsafe else ""
        return (f"{self.host}: {self.local_state()}{role}{failsafe}, lease age {age}, "
                f"{len(self.vms.owned)} VM(s) assigned")
