"""The cluster manager: one leader, elected by a store key attached to a manager lease.

Every agent runs a `Manager`; only the one holding `manager` acts. Each cycle it reads an
immutable `ClusterSnapshot`, decides for each host whether it is online, suspect, proven fenced
or cleanly offline, fences suspects that have a fence agent, and moves the VMs of proven-fenced
hosts by compare-and-set on the previous owner.

Failure semantics:
- Every write is a transaction guarded by the leader key being attached to this manager's
  current lease: a manager that lost leadership (or its lease) can not write, so it can not
  move a VM or record a fence, whatever it believes. The manager lease is short
  (`manager_lease_ttl`), so that a dead leader is replaced quickly.
- A fence agent is started only after such a guarded write succeeded (so a manager cut off from
  the store never shoots anyone: no "fence death match").
- Store unreachable: the cycle ends; nothing is decided on stale data.
- A failed fence agent falls back to the watchdog rule, loudly (event and alert).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ringfence.config import VM, ClusterConfig
from ringfence.core import leases
from ringfence.core.audit import AUDIT_PREFIX, AuditNote, read_note
from ringfence.core.event_text import render
from ringfence.core.events import Fact
from ringfence.core.explain import placement_notes
from ringfence.core.forced import REQUESTS_PREFIX, force_request_key
from ringfence.core.health import STORAGE_PROBE_EVERY
from ringfence.core.moves import admission_refusal, plan_moves
from ringfence.core.placement import HostRoom, plan
from ringfence.fence.base import FenceHandle
from ringfence.store.base import Compare, Delete, KeyValue, Op, Put, StoreUnavailable

if TYPE_CHECKING:
    from ringfence.core.agent import Agent, AgentParts

TTL_RESOLUTION = 1.05  # etcd's time-to-live is whole seconds
REBOOT_GRACE = 300.0  # how long a cleanly rebooting host keeps its VMs (policy freeze/conditional)
# How long a host ineligible for storage only (while it runs its VMs) must have been so before
# its VMs move: the hosts' probes see a fault they share (storage unwritable for everyone) up to
# a probe interval and a reading or two apart, and the first to see it must not lose its VMs to
# a host about to see it too (found in the lab). A NIC without carrier moves them at once.
UNFIT_SETTLE = STORAGE_PROBE_EVERY + 3.0


@dataclass(frozen=True)
class HostRecord:
    """What the store says about one host."""

    lease: KeyValue | None
    info: KeyValue | None
    fenced: KeyValue | None
    offline: KeyValue | None
    health: KeyValue | None = None
    maintenance: KeyValue | None = None

    @property
    def fit(self) -> bool:
        """May receive VMs, as far as its own probes say: it said so (no record yet: it has
        not said), and a full probe round has passed (`settled`)."""
        return (self.health is not None and self.health.value.get("state") == "eligible"
                and self.health.value.get("settled", True) is True)

    @property
    def ineligible(self) -> bool:
        return self.health is not None and self.health.value.get("state") == "ineligible"

    @property
    def unfit_for_storage_only(self) -> bool:
        """Ineligible, and only because a datastore is not writable (an agent of an older
        version says no causes: not this)."""
        causes = self.health.value.get("causes") if self.health is not None else None
        return self.ineligible and causes == ["storage"]

    @property
    def degraded(self) -> bool:
        return self.health is not None and self.health.value.get("state") == "degraded"

    @property
    def incarnation(self) -> int:
        return int(self.info.value.get("incarnation", 0)) if self.info else 0

    @property
    def info_revision(self) -> int:
        return self.info.mod_revision if self.info else 0

    def marks(self, record: KeyValue | None) -> bool:
        """Does a fenced/offline record speak of the host's current incarnation?"""
        return record is not None and record.value.get("incarnation") == self.incarnation


@dataclass(frozen=True)
class ClusterSnapshot:
    """The store's state at one revision: the input of one manager cycle."""

    revision: int
    leader: KeyValue | None
    hosts: Mapping[str, HostRecord]
    owners: Mapping[str, KeyValue]  # vm -> its owner key
    requests: Mapping[str, KeyValue] = field(default_factory=dict)  # vm -> force request
    migrations: Mapping[str, KeyValue] = field(default_factory=dict)  # vm -> migrate request
    audit: tuple[AuditNote, ...] = ()  # operator requests to journal (`core.audit`)


@dataclass
class FenceJob:
    handle: FenceHandle
    started: float
    info_revision: int
    incarnation: int
    stopping: str | None = None  # why it was cancelled; its result is awaited


@dataclass
class Suspicion:
    since: float
    ttl_at_start: float | None


def read_snapshot(store_hosts: Mapping[str, KeyValue], store_vms: Mapping[str, KeyValue],
                  leader: KeyValue | None, revision: int, host_names: list[str],
                  requests: Mapping[str, KeyValue] | None = None) -> ClusterSnapshot:
    hosts = {
        h: HostRecord(
            store_hosts.get(leases.host_lease_key(h)),
            store_hosts.get(leases.host_info_key(h)),
            store_hosts.get(leases.host_fenced_key(h)),
            store_hosts.get(leases.host_offline_key(h)),
            store_hosts.get(leases.host_health_key(h)),
            store_hosts.get(leases.host_maintenance_key(h)),
        )
        for h in host_names
    }
    owners = {kv.key.split("/")[1]: kv for kv in store_vms.values() if kv.key.endswith("/owner")}
    force = {kv.key.rsplit("/", 1)[1]: kv for key, kv in (requests or {}).items()
             if key.startswith(REQUESTS_PREFIX)}
    migrate = {kv.key.rsplit("/", 1)[1]: kv for key, kv in (requests or {}).items()
               if key.startswith(leases.MIGRATE_PREFIX)}
    notes = tuple(note for key, kv in sorted((requests or {}).items())
                  if key.startswith(AUDIT_PREFIX) for note in [read_note(kv)] if note)
    return ClusterSnapshot(revision, leader, hosts, owners, force, migrate, notes)


def fast_fence_allowed(
    *, suspect_for: float, renewed_since: bool, others_heard: int, renewal_interval: float,
    heartbeat_interval: float,
) -> bool:
    """May the leader power-fence a host that no heartbeat reaches, before its lease expires?

    Not if the host renewed its lease since we lost it (it is alive and reaches the store: a
    heartbeat-network fault, not a host fault). Otherwise at once when we still hear other
    hosts (and none of them hears the suspect), or, when we hear nobody (two-node cluster, or
    our own links are down), only once the suspect has missed a renewal it would have made.
    """
    if renewed_since:
        return False
    if others_heard > 0:
        return True
    return suspect_for >= renewal_interval + 2 * heartbeat_interval


def _text(value: object) -> str | None:
    """A store value that should be a name: the string, or None (never "None")."""
    return value if isinstance(value, str) and value else None


class Manager:
    def __init__(self, config: ClusterConfig, host: str, parts: AgentParts, agent: Agent
                 ) -> None:
        self.config = config
        self.host = host
        self.parts = parts
        self.agent = agent
        self.timing = config.timing
        self.host_names = [h.name for h in config.hosts]
        self.vm_specs: dict[str, VM] = {v.name: v for v in config.vms}
        self.is_leader = False
        self.lease: int | None = None  # our manager lease, while we hold one
        self.next_keepalive = 0.0
        self.snapshot: ClusterSnapshot | None = None
        self.gone_since: dict[str, tuple[int, float]] = {}
        self.suspects: dict[str, Suspicion] = {}
        self.heard_life: dict[str, int] = {}  # host -> the incarnation (info revision) we heard
        self.fencing: dict[str, FenceJob] = {}
        self.fence_failed: dict[str, int] = {}  # host -> info revision whose fencing failed
        self.pending: dict[str, str] = {}  # vm -> why it could not be placed
        self.force_waits: dict[str, int] = {}  # vm -> the forced start waiting for a move
        self.now = 0.0
        self.leading_since = 0.0
        self.last_revision = 0
        self.wrote = False  # a write of ours succeeded since `Agent.take_own_writes` asked
        # (store revision, view version) last found to need nothing: skip re-deciding it
        self.quiet_recovery: tuple[int, int] | None = None
        self.quiet_moves: tuple[int, int] | None = None
        self.quiet_unfit: tuple[int, int] | None = None
        self.stranded: dict[str, str] = {}  # vm -> the ineligible host it stays on
        self.unfit_since: dict[str, float] = {}  # host -> when we first saw it ineligible
        self.fit_life: dict[str, int] = {}  # host -> the incarnation we last saw it fit in
        self.rebooting_since: dict[tuple[str, int], float] = {}
        self.view: dict[str, str] = {}
        self.view_version = 0  # bumped whenever `view` changes (cheap change detection)

    def step_down(self) -> None:
        self.is_leader = False
        self.view = {}
        self.view_version += 1

    def resign(self) -> None:
        """Clean stop: give the leadership up now rather than when the lease expires."""
        lease, self.lease = self.lease, None
        self.step_down()
        if lease is not None:
            with contextlib.suppress(StoreUnavailable):  # if so, it expires on its own
                self.parts.store.revoke(lease)

    def _set_view(self, host: str, state: str) -> None:
        if self.view.get(host) != state:
            self.view[host] = state
            self.view_version += 1

    # ----------------------------------------------------------------- cycle
    def tick(self, now: float) -> None:
        self.now = now
        try:
            snapshot = self._read()
            self._note_heard(snapshot)  # leader or not: a new leader knows whom it heard
            if not self._lead(now, snapshot):
                return
            snapshot = self._read()
            for host in self.host_names:
                if host != self.host:
                    self._set_view(host, self._assess(now, host, snapshot))
            own = snapshot.hosts[self.host]
            self._set_view(self.host, "maintenance" if own.maintenance is not None
                           else self.agent.local_state())
            self._journal_requests(snapshot)
            self._poll_fencing(now, snapshot)
            self._adopt_new_vms(snapshot)
            self._force_requests(snapshot)
            self._confirm_stopped_holders(snapshot)
            self._recover(snapshot)
            self._evacuate_unfit(now, snapshot)
            self._migrate_requests(snapshot)
            self._planned_moves(snapshot)
        except StoreUnavailable:
            return

    def _read(self) -> ClusterSnapshot:
        store = self.parts.store
        revision = self.agent.revision()
        if self.snapshot is not None and self.snapshot.revision == revision:
            return self.snapshot
        hosts = store.get_prefix(leases.HOSTS_PREFIX)
        vms = store.get_prefix(leases.VMS_PREFIX)
        requests = store.get_prefix("requests/")
        leader = store.get(leases.MANAGER_KEY)
        self.snapshot = read_snapshot(hosts.by_key, vms.by_key, leader,
                                      max(hosts.revision, vms.revision), self.host_names,
                                      requests.by_key)
        return self.snapshot

    def _guard(self) -> Compare:
        """The condition every manager write carries: we still lead, under our lease."""
        return Compare(leases.MANAGER_KEY, "lease", self.lease)

    def _write(self, compare: list[Compare], ops: list[Op]) -> bool:
        result = self.parts.store.txn([self._guard(), *compare], ops)
        if result.succeeded:
            self.snapshot = None
            self.last_revision = result.revision  # the token of what this write granted
            self.wrote = True
        return result.succeeded

    def _lead(self, now: float, snapshot: ClusterSnapshot) -> bool:
        """Keep or take the leadership; True while we lead. The manager lease is kept alive
        here, in the decision cycle: a host whose store calls are so slow that it can not keep
        its manager lease loses the leadership to one that can, which is what should happen
        (its own host lease is kept by the lease cycle, so it does not self-fence for it)."""
        store = self.parts.store
        if self.lease is not None and now >= self.next_keepalive - 1e-6:
            if store.keepalive(self.lease):
                self.next_keepalive = now + self.timing.effective_manager_lease_ttl / 3
            else:
                self.lease = None
        leader = snapshot.leader
        if (leader is not None and leader.value.get("host") == self.host
                and int(leader.value.get("incarnation", 0)) < self.agent.incarnation):
            # Our own previous incarnation led: it is dead (we are its successor on this
            # host), so its leadership can go now instead of when its lease expires.
            store.txn([Compare(leases.MANAGER_KEY, "lease", leader.lease)],
                      [Delete(leases.MANAGER_KEY)])
            leader = None
        silent = self._silent_leader(leader) if leader is not None else None
        if leader is not None and silent is None:
            was = self.is_leader
            self.is_leader = self.lease is not None and leader.lease == self.lease
            if was and not self.is_leader:
                self.step_down()
            elif self.is_leader and not was:
                self._elected(now)  # a takeover or an election whose answer was lost
            return self.is_leader
        if self.lease is None:
            self.lease = store.grant(self.timing.effective_manager_lease_ttl)
            self.next_keepalive = now + self.timing.effective_manager_lease_ttl / 3
        if leader is None:
            compare = [Compare.absent(leases.MANAGER_KEY)]
        else:
            # Take over on evidence: the write holds only if the key is still the silent
            # leader's, as we read it; from then on its guarded writes all fail.
            compare = [Compare(leases.MANAGER_KEY, "lease", leader.lease),
                       Compare.unchanged(leases.MANAGER_KEY, leader.mod_revision)]
        result = store.txn(
            compare,
            [Put(leases.MANAGER_KEY, {"host": self.host, "incarnation": self.agent.incarnation},
                 self.lease)])
        self.snapshot = None
        self.is_leader = result.succeeded
        if self.is_leader:
            self._elected(now, silent)
        return self.is_leader

    def _elected(self, now: float, took_from: str | None = None) -> None:
        self.leading_since = now
        self.parts.journal.record(
            "manager_elected", host=self.host, peer=took_from,
            reason=None if took_from is None else
            f"{took_from} led and is heard on no link by any host that this host hears")

    def _silent_leader(self, leader: KeyValue) -> str | None:
        """The host of the current leader if it may be replaced now, on evidence, rather than
        when its key expires (which, after the store's own election, restarts at full TTL):
        a host we heard in this life of ours and hear on no link, that no peer we hear says
        it hears, while we hear at least one other host (so that a host cut off from
        everyone never takes the leadership from a leader the others hear). Why it is safe:
        every manager write is guarded by the manager key's lease (`_guard`), and the takeover
        is a compare-and-set on the key as read, so at any moment only one manager's writes
        (fence intents, fenced marks, VM records) can succeed; a manager that is alive but
        replaced finds its guard false and steps down at its next read."""
        host = leader.value.get("host")
        if (not isinstance(host, str) or host == self.host or host not in self.host_names
                or leader.lease == self.lease):
            return None
        membership = self.agent.membership
        if not membership.ever_heard(host) or self._heard(host):
            return None
        if membership.others_heard(host) < 1:
            return None
        return host

    # ----------------------------------------------------------------- hosts
    def _heard(self, host: str) -> bool:
        membership = self.agent.membership
        return membership.hears(host) or membership.vouched_for(host)

    def _note_heard(self, snapshot: ClusterSnapshot) -> None:
        """Remember, per host, the incarnation (its info record's revision) that this agent
        has heard heartbeats from: a silent host is a suspect only if its current incarnation
        was heard (`_assess`). Every host's manager keeps this, so that a new leader knows."""
        membership = self.agent.membership
        for host in self.host_names:
            record = snapshot.hosts.get(host)
            if (host != self.host and record is not None and record.lease is not None
                    and membership.hears(host)):
                self.heard_life[host] = record.info_revision

    @staticmethod
    def _owners_in(snapshot: ClusterSnapshot) -> set[str]:
        return {str(kv.value.get("host")) for kv in snapshot.owners.values()}

    def _assess(self, now: float, host: str, snapshot: ClusterSnapshot) -> str:
        """One host's state as the leader sees it; starts fencing where the rules say so."""
        record = snapshot.hosts[host]
        if record.lease is not None:
            self.gone_since.pop(host, None)
            if self._heard(host):
                if self.suspects.pop(host, None) is not None:
                    self.parts.journal.record("host_alive", host=host)
                return "maintenance" if record.maintenance is not None else "online"
            if self.heard_life.get(host) != record.info_revision:
                # This incarnation of the host (a new boot, or anyone since our own start) has
                # never been heard by us: it is unknown, not lost, and nobody is fenced for a
                # silence that was never broken. Its lease decides if it is dead.
                return "unknown"
            self._suspect_alive(now, host, record)
            return "suspect"
        if record.info is None:
            # Never registered in this store: nothing about it can be proven from the store
            # (it may be alive, running VMs under another store, or not booted yet). Its VMs
            # stay where the records put them until it joins or an operator decides.
            return "unknown" if host in self._owners_in(snapshot) else "offline"
        if record.marks(record.offline):
            return "offline"
        if record.marks(record.fenced):
            return "fenced"
        return self._suspect_gone(now, host, record)

    def _suspect_alive(self, now: float, host: str, record: HostRecord) -> None:
        """No heartbeat reaches `host`, but the store still holds its lease."""
        assert record.lease is not None
        ttl = self.parts.store.time_to_live(record.lease.lease)
        suspicion = self.suspects.get(host)
        if suspicion is None:
            suspicion = self.suspects[host] = Suspicion(now, ttl)
            self.parts.journal.record("host_suspect", host=host,
                                      duration=ttl if ttl is not None else 0.0,
                                      incarnation=record.incarnation)
        if host not in self.parts.fence_agents or host in self.fencing:
            return
        if self.fence_failed.get(host) == record.info_revision:
            return
        # etcd reports time-to-live in whole seconds: a renewal shows as more than a second
        # above what the countdown since the suspicion began leaves.
        renewed = (ttl is not None and suspicion.ttl_at_start is not None
                   and ttl > suspicion.ttl_at_start - (now - suspicion.since) + TTL_RESOLUTION)
        if fast_fence_allowed(
            suspect_for=now - suspicion.since, renewed_since=renewed,
            others_heard=self.agent.membership.others_heard(host),
            renewal_interval=leases.renewal_interval(self.timing),
            heartbeat_interval=self.timing.heartbeat_interval,
        ):
            self._start_fence(now, host, record, "no heartbeat on any link")

    def _suspect_gone(self, now: float, host: str, record: HostRecord) -> str:
        """The store no longer holds `host`'s lease: prove it fenced before anything moves."""
        seen = self.gone_since.get(host)
        if seen is None or seen[0] != record.info_revision:
            seen = self.gone_since[host] = (record.info_revision, now)
            if record.info is not None:
                self.parts.journal.record("lease_expired", host=host,
                                          incarnation=record.incarnation)
        waited = now - seen[1]
        proven = leases.proven_by_expiry(waited, self.timing)
        may_fence = host in self.parts.fence_agents
        if may_fence and self.fence_failed.get(host) != record.info_revision:
            job = self.fencing.get(host)
            if job is None:
                self._start_fence(now, host, record, "lease expired")
            elif proven and job.stopping is None:
                # The watchdog proof is complete and the fence agent has not answered: stop
                # it (it must never act later) and, once stopped, take the watchdog's word.
                job.stopping = (f"no answer in {now - job.started:.1f}s, and {host}'s "
                                f"watchdog deadline has passed")
                job.handle.cancel()
            return "suspect"
        if proven:
            method = ("watchdog (fence agent failed)" if host in self.parts.fence_agents
                      else "watchdog")
            self._mark_fenced(host, record, method,
                              f"lease gone for {waited:.1f}s: its watchdog deadline has passed")
            return "fenced"
        return "suspect"

    def _start_fence(self, now: float, host: str, record: HostRecord, why: str) -> None:
        intent = Put(f"hosts/{host}/fence_intent", {"by": self.host,
                                                    "incarnation": record.incarnation})
        if not self._write([], [intent]):
            return
        action: Literal["off", "reboot"] = "reboot"
        handle = self.parts.fence_agents[host].fence(host, action)
        self.fencing[host] = FenceJob(handle, now, record.info_revision, record.incarnation)
        self.parts.journal.record("fence_started", host=host, reason=why, action=action,
                                  incarnation=record.incarnation)

    def _poll_fencing(self, now: float, snapshot: ClusterSnapshot) -> None:
        for host in sorted(self.fencing):
            job = self.fencing[host]
            result = job.handle.result()
            if result is None:
                if job.stopping is None and now - job.started >= self.timing.fence_timeout:
                    # Stopped before it counts as failed: a late fence would shoot a host
                    # that came back meanwhile.
                    job.stopping = f"no answer in {self.timing.fence_timeout:g}s"
                    job.handle.cancel()
                continue
            del self.fencing[host]
            record = snapshot.hosts[host]
            if result is not None and result.ok:
                self.parts.journal.record("fence_agent_ok", host=host, detail=result.detail,
                                          duration=now - job.started)
                self._mark_fenced(host, record, "fence agent", result.detail,
                                  info_revision=job.info_revision,
                                  incarnation=job.incarnation)
                continue
            detail = result.detail if job.stopping is None else f"{job.stopping}; stopped"
            self.fence_failed[host] = job.info_revision
            self.parts.journal.record("fence_agent_failed", host=host, detail=detail,
                                      duration=now - job.started)
            self.parts.alerts.send(
                "critical", f"fencing {host} failed ({detail}); falling back to its watchdog: "
                            f"recovery waits for its lease to expire", host=host)

    def _mark_fenced(self, host: str, record: HostRecord, method: str, detail: str, *,
                     info_revision: int | None = None, incarnation: int | None = None) -> None:
        info_revision = record.info_revision if info_revision is None else info_revision
        incarnation = record.incarnation if incarnation is None else incarnation
        compare = [Compare.unchanged(leases.host_info_key(host), info_revision)]
        if method == "fence agent":
            ops: list[Op] = []
        else:
            compare.append(Compare.absent(leases.host_lease_key(host)))
            ops = []
        ops.append(Put(leases.host_fenced_key(host), {"incarnation": incarnation,
                                                     "method": method, "by": self.host}))
        if not self._write(compare, ops):
            return
        if method == "fence agent" and record.lease is not None:
            # The host is off; end its lease so that nothing mistakes it for alive.
            self.parts.store.revoke(record.lease.lease)
        self.suspects.pop(host, None)
        self._set_view(host, "fenced")  # its VMs may move in this same cycle
        self.parts.journal.record("host_fenced", host=host, method=method, detail=detail,
                                  incarnation=incarnation)
        self.parts.alerts.send("critical", f"{host} fenced by {method}", host=host)

    # ----------------------------------------------------------------- VMs
    def _recover(self, snapshot: ClusterSnapshot) -> None:
        state = (snapshot.revision, self.view_version)
        if state == self.quiet_recovery:
            return
        movable: list[VM] = []
        avoid: dict[str, list[str]] = {}
        for name, kv in sorted(snapshot.owners.items()):
            owner = kv.value.get("host")
            if name not in self.vm_specs:
                continue
            if owner is None and (kv.value.get("stopped_by") or self._gave_up(name, kv)):
                continue  # an operator stopped it, or it kept dying
            if self._in_move(snapshot, kv) is not None:
                continue  # its previous holder still runs it: the move ends first
            if owner is None or self._releases_vms(snapshot, owner):
                movable.append(self.vm_specs[name])
                avoid[name] = list(kv.value.get("avoid", []))
        if not movable:
            # Nothing to move, and nothing can change that until the store or the view does
            # (except a reboot overdue with time: such hosts are `offline`, never cached).
            if "offline" not in self.view.values():
                self.quiet_recovery = state
            return
        rooms = self._rooms(snapshot)
        baseline = {n: HostRoom(r.name, r.free_cpus, r.free_memory, set(r.vms))
                    for n, r in rooms.items()}
        before = {n: HostRoom(r.name, r.free_cpus, r.free_memory, set(r.vms))
                  for n, r in rooms.items()}
        unavailable = {h: self._why_unavailable(snapshot, h) for h in self.host_names
                       if h not in rooms}
        placement = plan(movable, rooms, self.config.groups, avoid)
        for spec in movable:
            target = placement.assignments[spec.name]
            reason = placement.reasons.get(spec.name, "")
            notes = placement_notes(spec, target, self.host_names, before, unavailable,
                                    avoid.get(spec.name, []), self.config.groups)
            if target is not None and self._is_new_start(snapshot.owners[spec.name]):
                refusal = admission_refusal(spec, target, baseline, self.vm_specs,
                                            self.config.groups,
                                            self.config.policy.host_failures_to_tolerate)
                if refusal is not None:
                    target, reason = None, refusal
                else:
                    baseline[target].take(spec)
            self._move(snapshot, spec.name, target, reason, notes)

    def _evacuate_unfit(self, now: float, snapshot: ClusterSnapshot) -> None:
        """VMs on a live host that says it is ineligible (storage unwritable, NIC gone) move,
        by restart, to an eligible host with room (a host ineligible for storage only once it
        has been so for `UNFIT_SETTLE`: a fault all hosts share shows as one); where none
        exists they stay where they run, and an alert says so (stopping them would help
        nobody: VM Component Protection's rule). The holder stops each VM and confirms
        (`after`) before the target starts it."""
        state = (snapshot.revision, self.view_version)
        if state == self.quiet_unfit:
            return
        unfit = {h for h, r in snapshot.hosts.items()
                 if r.ineligible and r.lease is not None
                 and self.view.get(h) in ("online", "jeopardy", "degraded", "ineligible")}
        self.unfit_since = {h: self.unfit_since.get(h, now) for h in unfit}
        self.fit_life.update({h: r.incarnation for h, r in snapshot.hosts.items() if r.fit})
        settled = {h for h in unfit if now - self.unfit_since[h] >= UNFIT_SETTLE
                   or not self._may_share_the_fault(snapshot.hosts[h], h)}
        on_unfit = sorted((vm, str(kv.value["host"])) for vm, kv in snapshot.owners.items()
                          if kv.value.get("host") in settled and kv.value.get("after") is None
                          and vm in self.vm_specs)
        for vm in [v for v, h in self.stranded.items() if (v, h) not in on_unfit]:
            del self.stranded[vm]
        if not on_unfit:
            if settled == unfit:  # nobody still settling: nothing to look at until a change
                self.quiet_unfit = state
            return
        rooms = self._rooms(snapshot)
        before = {n: HostRoom(r.name, r.free_cpus, r.free_memory, set(r.vms))
                  for n, r in rooms.items()}
        unavailable = {h: self._why_unavailable(snapshot, h) for h in self.host_names
                       if h not in rooms}
        placement = plan([self.vm_specs[vm] for vm, _ in on_unfit], rooms, self.config.groups)
        for vm, source in on_unfit:
            target = placement.assignments[vm]
            reasons = snapshot.hosts[source].health
            why = "; ".join(reasons.value.get("reasons", [])) if reasons else "ineligible"
            if target is None:
                if self.stranded.get(vm) != source:
                    self.stranded[vm] = source
                    fields: dict[str, Any] = {
                        "vm": vm, "host": source, "reason": why,
                        "detail": placement.reasons.get(vm, "no room")}
                    self.parts.journal.record("vm_stranded", **fields)
                    self.parts.alerts.send("critical", render(Fact("vm_stranded", self.host,
                                                                   **fields)), vm=vm)
                continue
            kv = snapshot.owners[vm]
            target_lease = snapshot.hosts[target].lease
            assert target_lease is not None
            value = {k: v for k, v in kv.value.items() if k not in ("after", "migrate", "cause")}
            value.update(host=target, after=source, **{"from": source},
                         reason=f"{source} is ineligible: {why}")
            if self._write([Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision),
                            Compare.unchanged(leases.host_info_key(source),
                                              snapshot.hosts[source].info_revision),
                            Compare.unchanged(leases.host_lease_key(target),
                                              target_lease.mod_revision)],
                           [Put(leases.vm_owner_key(vm), value)]):
                self.stranded.pop(vm, None)
                notes = placement_notes(self.vm_specs[vm], target, self.host_names, before,
                                        unavailable, [], self.config.groups)
                self.parts.journal.record("vm_relocating", vm=vm, host=target,
                                          token=self.last_revision, source=source,
                                          target=target, reason=why, reasons=notes)

    def _may_share_the_fault(self, record: HostRecord, host: str) -> bool:
        """Is this an ineligibility to let settle (`UNFIT_SETTLE`)? Only a storage fault that
        came while the host ran its VMs (fit earlier in this incarnation): a host that came
        up unfit runs nothing (it starts nothing while unfit), so waiting would only be
        downtime (seed 003: storage unwritable after a reboot)."""
        return (record.unfit_for_storage_only
                and self.fit_life.get(host) == record.incarnation)

    @staticmethod
    def _is_new_start(kv: KeyValue) -> bool:
        """A VM that never ran (no previous holder): admission control applies to it."""
        return kv.value.get("host") is None and "from" not in kv.value

    def _journal_requests(self, snapshot: ClusterSnapshot) -> None:
        """Journal the operators' requests from their audit notes, then drop each note: at
        least once (see `core.audit`)."""
        for note in snapshot.audit:
            self.parts.journal.record(note.kind, operator=note.operator, request=note.request,
                                      planned=True, **note.fields)
            self._write([Compare.unchanged(note.key, note.revision)], [Delete(note.key)])

    def _migrate_requests(self, snapshot: ClusterSnapshot) -> None:
        """Operators' live migrations: to a host that may receive the VM, with room."""
        if not snapshot.migrations:
            return
        rooms = self._rooms(snapshot)
        for vm, request in sorted(snapshot.migrations.items()):
            target = str(request.value.get("to"))
            kv = snapshot.owners.get(vm)
            source = kv.value.get("host") if kv else None
            drop = Delete(leases.migrate_request_key(vm))
            guard = Compare.unchanged(leases.migrate_request_key(vm), request.mod_revision)
            problem = None
            if kv is None or source is None or vm not in self.vm_specs:
                problem = f"{vm} does not run anywhere"
            elif kv.value.get("after") is not None:
                problem = f"{vm} is already moving"
            elif source == target:
                problem = f"{vm} already runs on {target}"
            elif target not in rooms:
                problem = f"{target} may not receive VMs now ({self.view.get(target, 'unknown')})"
            else:
                placed = plan([self.vm_specs[vm]], {target: rooms[target]}, self.config.groups)
                if placed.assignments[vm] is None:
                    problem = f"{target} can not take it: {placed.reasons[vm]}"
            if problem is not None or kv is None:
                if self._write([guard], [drop]):
                    self.parts.journal.record(
                        "vm_migrate_refused", vm=vm, host=target, target=target,
                        reason=problem, operator=_text(request.value.get("by")),
                        request=_text(request.value.get("request")))
                continue
            self._start_migration(vm, kv, target, "operator asked", extra_ops=[drop],
                                  extra_compare=[guard], cause="operator",
                                  operator=_text(request.value.get("by")),
                                  request=_text(request.value.get("request")))

    def _planned_moves(self, snapshot: ClusterSnapshot) -> None:
        """Drain hosts in maintenance, evacuate degraded hosts, bring drained VMs home,
        fail back to preferred hosts (see `core.moves`)."""
        state = (snapshot.revision, self.view_version)
        if state == self.quiet_moves:
            return
        online = {h for h, s in self.view.items() if s in ("online", "jeopardy", "maintenance",
                                                          "degraded")}
        placed = {vm: str(kv.value["host"]) for vm, kv in snapshot.owners.items()
                  if kv.value.get("host") is not None and kv.value.get("after") is None}
        draining = [h for h, r in snapshot.hosts.items()
                    if r.maintenance is not None and h in online]
        degraded = [h for h, r in snapshot.hosts.items()
                    if r.degraded and h in online] if self.config.policy.evacuate_degraded else []
        homes = {vm: str(kv.value["home"]) for vm, kv in snapshot.owners.items()
                 if kv.value.get("home")}
        moves = plan_moves(placed=placed, specs=self.vm_specs, rooms=self._rooms(snapshot),
                           groups=self.config.groups, draining=draining, degraded=degraded,
                           homes=homes, failback=self.config.policy.failback)
        for move in moves:
            kv = snapshot.owners[move.vm]
            cause = move.cause
            maintenance = snapshot.hosts[move.source].maintenance if cause == "maintenance" \
                else None
            if maintenance is not None and maintenance.value.get("reason") == "shutdown":
                cause = "shutdown"
            self._start_migration(move.vm, kv, move.target, move.why, home=move.home,
                                  cause=cause,
                                  operator=_text(maintenance.value.get("by"))
                                  if maintenance is not None else None,
                                  request=_text(maintenance.value.get("request"))
                                  if maintenance is not None else None)
        self._forget_homes(snapshot)
        if not moves and not homes:
            self.quiet_moves = state

    def _forget_homes(self, snapshot: ClusterSnapshot) -> None:
        """A VM back home (or whose home is gone for good) no longer needs to remember it."""
        for vm, kv in sorted(snapshot.owners.items()):
            home = kv.value.get("home")
            if home is None or kv.value.get("after") is not None:
                continue
            if kv.value.get("host") == home or self.view.get(home) == "fenced":
                value = {k: v for k, v in kv.value.items() if k != "home"}
                self._write([Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision)],
                            [Put(leases.vm_owner_key(vm), value)])

    def _start_migration(self, vm: str, kv: KeyValue, target: str, why: str, *,
                         home: str | None = None, extra_ops: list[Op] | None = None,
                         extra_compare: list[Compare] | None = None, cause: str = "operator",
                         operator: str | None = None, request: str | None = None) -> None:
        source = str(kv.value.get("host"))
        value = {k: v for k, v in kv.value.items() if k not in ("after", "migrate", "cause")}
        value.update(host=target, after=source, migrate=True, cause=cause)
        if home is not None:
            value["home"] = home
        compare = [Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision),
                   *(extra_compare or [])]
        if self._write(compare, [Put(leases.vm_owner_key(vm), value), *(extra_ops or [])]):
            self.parts.journal.record(
                "vm_migrating", vm=vm, host=source, source=source, target=target,
                token=self.last_revision, cause=cause, reason=why, operator=operator,
                request=request, planned=cause != "degraded")

    def _adopt_new_vms(self, snapshot: ClusterSnapshot) -> None:
        """A VM in the cluster file that the store does not know yet: its record starts on
        the host the file names (or none: then placement and admission control decide)."""
        for vm in sorted(self.vm_specs):
            if vm in snapshot.owners:
                continue
            host = self.vm_specs[vm].host
            if self._write([Compare.absent(leases.vm_owner_key(vm))],
                           [Put(leases.vm_owner_key(vm), {"host": host})]):
                self.parts.journal.record("vm_adopted", vm=vm, host=host)

    def _gave_up(self, vm: str, kv: KeyValue) -> bool:
        """A VM that kept dying is not moved again after `policy.max_relocate` moves."""
        relocations = int(kv.value.get("relocations", 0))
        if relocations <= self.config.policy.max_relocate:
            return False
        if self.pending.get(vm) != "failed":
            self.pending[vm] = "failed"
            fields: dict[str, Any] = {"vm": vm, "peers": tuple(kv.value.get("avoid", [])),
                                      "count": relocations - 1}
            self.parts.journal.record("vm_failed", **fields)
            self.parts.alerts.send("critical", render(Fact("vm_failed", self.host, **fields)),
                                   vm=vm)
        return True

    def _confirm_stopped_holders(self, snapshot: ClusterSnapshot) -> None:
        """A record waits for its previous holder to stop the VM (`after`); if that holder
        is proven fenced, it can not run anything: clear the wait."""
        for vm, kv in sorted(snapshot.owners.items()):
            after = kv.value.get("after")
            if after is None or not self._releases_vms(snapshot, after, any_policy=True):
                continue
            value = {k: v for k, v in kv.value.items() if k != "after"}
            if self._write([Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision)],
                           [Put(leases.vm_owner_key(vm), value)]):
                self.parts.journal.record("vm_released", vm=vm, host=after,
                                          cause="holder_fenced", reason=self.view.get(after),
                                          target=_text(value.get("host")))

    def _force_requests(self, snapshot: ClusterSnapshot) -> None:
        """Operators' forced starts with quorum: a normal, audited lease change."""
        for vm, request in sorted(snapshot.requests.items()):
            target = str(request.value.get("host"))
            operator = str(request.value.get("operator"))
            request_id = _text(request.value.get("request"))
            drop = Delete(force_request_key(vm))
            guard = Compare.unchanged(force_request_key(vm), request.mod_revision)
            kv = snapshot.owners.get(vm)
            record = snapshot.hosts.get(target)
            if vm not in self.vm_specs or kv is None or record is None or record.lease is None:
                if self._write([guard], [drop]):
                    self.parts.journal.record(
                        "force_start_refused", vm=vm, host=target, operator=operator,
                        request=request_id,
                        reason=f"{target} is not a live member of the cluster")
                continue
            waiting_for = self._in_move(snapshot, kv)
            if waiting_for is not None:
                if self.force_waits.get(vm) != request.mod_revision:
                    self.force_waits[vm] = request.mod_revision
                    self.parts.journal.record(
                        "force_start_waiting", vm=vm, host=target, operator=operator,
                        request=request_id, source=waiting_for,
                        target=_text(kv.value.get("host")))
                continue
            self.force_waits.pop(vm, None)
            old = kv.value.get("host")
            value: dict[str, object] = {"host": target, "forced_by": operator}
            if old not in (None, target) and not self._releases_vms(snapshot, old,
                                                                    any_policy=True):
                value["after"] = old  # the holder stops it first (or is proven fenced)
            if old == target:
                value = dict(kv.value)
            if self._write([guard, Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision)],
                           [drop, Put(leases.vm_owner_key(vm), value)]):
                self.pending.pop(vm, None)
                self.parts.journal.record(
                    "force_start", vm=vm, host=target, cause="carried_out", operator=operator,
                    request=request_id, source=_text(old), token=self.last_revision,
                    peer=_text(old) if "after" in value else None)

    def _in_move(self, snapshot: ClusterSnapshot, kv: KeyValue) -> str | None:
        """The live host a record still waits for (`after`: a live migration's source, or a
        holder stopping the VM), or None. Such a record is rewritten by nobody but that host
        (or the leader once it is proven fenced): a new holder written over it would drop the
        one host that may still run the VM."""
        after = kv.value.get("after")
        if after is None or self._releases_vms(snapshot, str(after), any_policy=True):
            return None
        return str(after)

    def _releases_vms(self, snapshot: ClusterSnapshot, owner: str, *,
                      any_policy: bool = False) -> bool:
        """Are the VMs of `owner` free to start elsewhere? Yes once it is proven fenced; for
        a clean shutdown, as the shutdown policy says (`conditional`: a rebooting host keeps
        its VMs, frozen, and restarts them; a host shut down gives them up)."""
        state = self.view.get(owner)
        if state == "fenced":
            return True
        if state != "offline":
            return False
        record = snapshot.hosts[owner]
        if any_policy:
            return True
        reason = record.offline.value.get("reason") if record.offline else "shutdown"
        policy = self.config.policy.shutdown
        if policy in ("failover", "migrate") or (policy == "conditional" and reason != "reboot"):
            return True
        return self._reboot_overdue(owner, record)

    def _reboot_overdue(self, host: str, record: HostRecord) -> bool:
        """A host that rebooted cleanly keeps its VMs (frozen) only for `REBOOT_GRACE`: a
        reboot that never comes back must not keep them down for good."""
        since = self.rebooting_since.setdefault((host, record.incarnation), self.now)
        if self.now - since < REBOOT_GRACE:
            return False
        if since >= 0:
            self.rebooting_since[(host, record.incarnation)] = -1.0  # say it once
            fields: dict[str, Any] = {"host": host, "duration": REBOOT_GRACE}
            self.parts.journal.record("reboot_overdue", **fields)
            text = render(Fact("reboot_overdue", self.host, **fields))
            self.parts.alerts.send("critical", text, host=host)
        return True

    def _rooms(self, snapshot: ClusterSnapshot) -> dict[str, HostRoom]:
        rooms: dict[str, HostRoom] = {}
        for host in self.config.hosts:
            if self.view.get(host.name) not in ("online", "jeopardy"):
                continue
            record = snapshot.hosts[host.name]
            if record.lease is None or not record.fit or record.maintenance is not None:
                continue
            rooms[host.name] = HostRoom(host.name, host.cpus, host.memory)
        for name, kv in snapshot.owners.items():
            room = rooms.get(kv.value.get("host") or "")
            vm = self.vm_specs.get(name)
            if room is not None and vm is not None:
                room.free_cpus -= vm.cpus
                room.free_memory -= vm.memory
                room.vms.add(name)
        return rooms

    def _why_unavailable(self, snapshot: ClusterSnapshot, host: str) -> str:
        """Why `host` may not receive VMs now, in a few words (see `_rooms`)."""
        state = self.view.get(host, "unknown")
        record = snapshot.hosts.get(host)
        if state not in ("online", "jeopardy") or record is None:
            return state
        if record.lease is None:
            return "no lease"
        if record.maintenance is not None:
            return "in maintenance"
        if not record.fit:
            reasons = record.health.value.get("reasons", []) if record.health else []
            return "unfit: " + ("; ".join(str(r) for r in reasons) or "its checks fail")
        return state

    def _move(self, snapshot: ClusterSnapshot, vm: str, target: str | None, reason: str,
              notes: tuple[str, ...] = ()) -> None:
        kv = snapshot.owners[vm]
        old = kv.value.get("host")
        compare = [Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision)]
        if old is not None:
            compare.append(Compare.unchanged(leases.host_info_key(old),
                                             snapshot.hosts[old].info_revision))
        carry: dict[str, Any] = {k: kv.value[k] for k in ("relocations", "avoid")
                                 if k in kv.value}
        if target is None:
            if self.pending.get(vm) == reason and old is None:
                return
            if self.now - self.leading_since < 2 * self.timing.effective_heartbeat_timeout:
                return  # a new leader does not hear everyone yet: no "no place" verdicts
            if old is not None and not self._write(
                    compare, [Put(leases.vm_owner_key(vm), {"host": None, "from": old, **carry})]):
                return
            self.pending[vm] = reason
            self.parts.journal.record("vm_pending", vm=vm, host=old, reason=reason)
            self.parts.alerts.send("critical", f"{vm} can not be restarted: {reason}", vm=vm)
            return
        target_lease = snapshot.hosts[target].lease
        assert target_lease is not None
        compare.append(Compare.unchanged(leases.host_lease_key(target), target_lease.mod_revision))
        if not self._write(compare, [Put(leases.vm_owner_key(vm),
                                         {"host": target, "from": old, **carry})]):
            return
        self.pending.pop(vm, None)
        if old:
            cause, source, why = "host_lost", old, self.view.get(old, "gone")
        elif kv.value.get("from"):
            cause, source = "handed_back", _text(kv.value["from"])
            why = _text(kv.value.get("reason")) or "no reason"
        else:
            cause, source, why = "placed", None, "it was waiting for a place"
        self.parts.journal.record(
            "vm_recovered", vm=vm, host=target, token=self.last_revision, cause=cause,
            source=source, target=target, reason=why, reasons=notes,
            operator=_text(kv.value.get("started_by")), request=_text(kv.value.get("request")),
            planned=kv.value.get("started_by") is not None)
