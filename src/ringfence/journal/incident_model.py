"""What an incident is made of (outages, per-VM impact, evidence, operator actions, the
incident), the kinds that open, grow or explain one, and the timing constants of the
correlation (`journal.incidents` has the rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ringfence.core.events import Fact
from ringfence.journal.events import Event

Severity = Literal["critical", "major", "warning"]
Resolution = Literal["verified", "unverified", "escalated"]
FencePath = Literal["fence agent", "watchdog", "self-fence", "clean shutdown"]
Verification = Literal["verified", "failed", "pending"]


WINDOW = 120.0  # seconds of inactivity after which a signal opens a new incident
BURST = 10.0  # failures this close to an incident's opening are part of it, whatever the host
LEAD_IN = 10.0  # a failure this close to an early warning grows the warning's incident
VERIFY_WAIT = 60.0  # seconds after the last recovery before "resolved without verification"
LOOKBACK = 24 * 3600.0  # root-cause evidence from before the incident: this far back

STARTUP_WAIT = 10.0
"""A host that waits for the store at start and joins within this many seconds had a normal
start (the store's bootstrap, a lock, an election), not a failure."""

FAILURE_KINDS = frozenset({
    "heartbeat_lost", "host_suspect", "host_fenced", "self_fence", "watchdog_reset",
    "lease_expired", "fence_agent_failed", "quorum_lost", "waiting_for_quorum",
    "failsafe_entered", "preexisting_split_brain", "storage_unwritable", "host_ineligible",
    "vm_crashed", "vm_failed", "vm_pending", "vm_verify_failed", "vm_start_failed",
    "vm_stop_failed", "hypervisor_error", "force_start", "force_start_pending",
    "force_start_refused", "reboot_overdue", "rejoin_blocked",
})
"""Kinds that open (or grow) an incident: something failed."""

WARNING_KINDS = frozenset({"link_down", "link_flapping", "memory_errors", "host_degraded"})
"""Kinds that open a ``warning`` incident before anything failed."""

# Events that keep an incident active (alerts, jeopardy and restored heartbeats do not: on a
# lossy link they never stop, and they must not keep one incident open for ever).
_ACTIVITY_KINDS = FAILURE_KINDS | WARNING_KINDS | frozenset({
    "vm_started", "vm_restarted", "vm_stopped", "vm_migrated", "vm_migrating", "vm_recovered",
    "vm_verified", "vm_released", "fence_started", "fence_agent_ok", "link_up",
    "quorum_gained", "host_healthy", "storage_writable", "host_alive", "nic_renamed",
    "host_shutdown", "failsafe_left", "rejoin_allowed",
})

# A host that had one of these in an incident is what the incident is about.
_HOST_FAULT_KINDS = frozenset({
    "host_suspect", "host_fenced", "fence_started", "fence_agent_ok", "fence_agent_failed",
    "self_fence", "watchdog_reset", "lease_expired", "host_shutdown", "link_down",
    "link_flapping", "host_degraded", "memory_errors", "storage_unwritable", "host_ineligible",
    "reboot_overdue", "nic_renamed",
})
_MAJOR_KINDS = frozenset({
    "host_suspect", "host_fenced", "self_fence", "watchdog_reset",
    "lease_expired", "fence_agent_failed", "quorum_lost", "waiting_for_quorum",
    "failsafe_entered", "storage_unwritable", "host_ineligible", "vm_failed", "vm_pending",
    "vm_start_failed", "vm_stop_failed", "force_start", "force_start_pending",
    "reboot_overdue", "rejoin_blocked",
})
_EVIDENCE_KINDS = frozenset({
    "link_down", "link_up", "link_flapping", "memory_errors", "host_degraded",
    "storage_unwritable", "storage_writable", "host_ineligible", "nic_renamed",
    "heartbeat_lost", "jeopardy", "quorum_lost", "self_fence", "watchdog_reset",
    "fence_agent_failed", "vm_crashed", "vm_verify_failed", "preexisting_split_brain",
    "host_shutdown", "reboot_overdue",
})
# Evidence worth looking back for before an incident opened (the early warnings of seed 000).
_LOOKBACK_KINDS = frozenset({
    "link_down", "link_flapping", "memory_errors", "host_degraded", "storage_unwritable",
    "vm_crashed", "watchdog_reset", "nic_renamed",
})
OPERATOR_KINDS = frozenset({
    "force_start", "force_start_pending", "force_start_waiting", "force_start_refused",
    "maintenance_on",
    "maintenance_off", "operator_refused", "vm_migrate_refused",
})
_FENCE_PROOF_KINDS = frozenset({"fence_agent_ok", "watchdog_reset", "host_fenced"})
_BOOT_KINDS = frozenset({"nic_renamed", "waiting_for_quorum", "watchdog_missing"})



# ====================================================================== results
SIGNS_WRITES = "the VM's own writes"
SIGNS_JOURNAL = "the agents' start and stop events"
"""Where a downtime figure comes from (`journal.downtime` has the one definition)."""


@dataclass(frozen=True)
class Outage:
    """One stretch during which a VM was down (or, `live`, moved by live migration)."""

    vm: str
    from_host: str | None
    to_host: str | None
    down_at: float
    back_at: float | None
    fence_path: FencePath | None
    cause: str
    live: bool
    exact: bool  # `down_at` comes from an explicit stop; else it is estimated (docstring)
    isolated_at: float | None  # when the VM was cut off from the network before it stopped
    verification: Verification
    verified_at: float | None
    operator: bool  # an operator's action stopped it
    note: str | None = None  # why it is still down (no place to run, left for an operator)
    down_earliest: float = 0.0  # the stop happened at or after this (last sign it ran)...
    down_latest: float = 0.0  # ...and at or before this (first proof it did not)

    @property
    def uncertain(self) -> bool:
        """Is the stop time known only to more than a second (nobody saw it happen)?"""
        return self.down_latest - self.down_earliest > 1.0

    def downtime(self, end: float) -> float:
        """Seconds down, counting an outage that has not ended up to `end`."""
        if self.live:
            return 0.0
        return max(0.0, (self.back_at if self.back_at is not None else end) - self.down_at)


@dataclass(frozen=True)
class VmImpact:
    """What an incident did to one VM (its outages, summed)."""

    vm: str
    from_host: str | None
    to_host: str | None
    down_at: float
    back_at: float | None
    downtime_s: float
    fence_path: FencePath | None
    verification: Verification
    verified_at: float | None
    interrupted_s: float  # from cut off (or down) until it answers (or runs) again
    outages: tuple[Outage, ...]
    downtime_source: str = SIGNS_JOURNAL  # the signs of life it is measured from

    @property
    def still_down(self) -> bool:
        return self.back_at is None

    @property
    def moved_live(self) -> bool:
        return all(o.live for o in self.outages)


@dataclass(frozen=True)
class Evidence:
    """A fact that explains the incident; `before`: journaled before the incident opened."""

    t: float
    kind: str
    host: str | None
    vm: str | None
    text: str
    before: bool
    fact: Fact


@dataclass(frozen=True)
class OperatorAction:
    t: float
    kind: str
    operator: str | None
    vm: str | None
    host: str | None
    text: str


@dataclass(frozen=True)
class Incident:
    id: str
    severity: Severity
    opened_at: float
    resolved_at: float | None
    resolution: Resolution | None
    title: str
    hosts: tuple[str, ...]
    vms: tuple[VmImpact, ...]
    evidence: tuple[Evidence, ...]
    operator_actions: tuple[OperatorAction, ...]
    events: tuple[Event, ...]
    stream_end: float
    superseded_by: str | None = None
    first_failure_at: float | None = None  # the first fault signal (not an early warning)
    waiting: tuple[str, ...] = ()  # VMs left without a place to run (pending, failed)

    @property
    def open(self) -> bool:
        return self.resolution is None

    @property
    def status(self) -> str:
        if self.resolution is None:
            return "open"
        return {"verified": "resolved", "unverified": "resolved without verification",
                "escalated": "escalated"}[self.resolution]

    @property
    def last_event_at(self) -> float:
        return self.events[-1].t if self.events else self.opened_at


