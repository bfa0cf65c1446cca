"""Every kind of event the journal writes: what it means, and its typed fields.

An event is a :class:`Fact`: a kind and typed fields, the same in the simulator's journal and in
a real host's journal file. Its text is *rendered* from the fields (`render`, in
`core.event_text`) for people; nothing ever parses it back: incident correlation, reports,
`ringfence why`, alerts and the API read the fields. One kind means one thing: where two
situations used to share a kind and differ only in their words, they now have two kinds
(`lease_lost` is a host's own lease gone, `lease_expired` the leader seeing another host's
lease gone; `host_joined` is a new incarnation's registration, `quorum_gained` a host reaching
the store again after it lost it).

Fields (all optional but `kind`; each kind uses the ones its row in `KINDS` names):

- `by`: the host that journaled it (set by the journal; `None` for the simulated world and for
  operator tools); `host`: the host the event is *about* (for fencing events, the fenced host);
  `vm`: the VM it is about; `peer`/`peers`: the other host(s) of a relation (whom an observer
  hears, who blocks failsafe);
- `links` (heartbeat networks: the dead ones of a `heartbeat_lost`, the live ones of a
  `jeopardy`), `lost_links`, `network`, `nic`, `old_nic`, `mac`, `datastore`;
- `token` (a VM's lease revision), `incarnation`, `duration` (seconds measured: a gap, a wait, a
  lease's age), `limit` (the bound it is measured against), `count`, `total`;
- `source`/`target`: the hosts of a move; `method`: how (`fence agent`, `watchdog`, `power
  off`…); `action`: a fence action; `cause`: a short code saying why, from the kind's list in
  `CAUSES`; `reason`/`reasons`: why in words (rendered, never parsed); `detail`: text from
  outside ringfence (a fence agent's output, a hypervisor's error), shown as is;
- `operator`, `request`: who asked and the request's id (audit); `planned`: the event is part
  of planned work (an operator's stop, a maintenance drain, a clean shutdown): it appears in
  timelines but never opens an incident nor counts as downtime; `severity` (alerts); `alert`:
  an alert's id (its idempotency key at the receivers), on `alert_sent` and the events of its
  delivery and resolution.

`EVENT_KINDS` (kind -> meaning) is what scenario expectations are checked against, so that a
misspelt kind can not pass vacuously.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["CAUSES", "EVENT_KINDS", "FIELD_NAMES", "Fact", "OfFact", "fact_fields",
           "fact_from_fields"]


@dataclass(frozen=True, slots=True)
class Fact:
    """One journaled fact (see the module docstring for the fields)."""

    kind: str
    by: str | None = None
    host: str | None = None
    vm: str | None = None
    peer: str | None = None
    peers: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    lost_links: tuple[str, ...] = ()
    network: str | None = None
    nic: str | None = None
    old_nic: str | None = None
    mac: str | None = None
    datastore: str | None = None
    token: int | None = None
    incarnation: int | None = None
    duration: float | None = None
    limit: float | None = None
    count: int | None = None
    total: int | None = None
    source: str | None = None
    target: str | None = None
    method: str | None = None
    action: str | None = None
    cause: str | None = None
    reason: str | None = None
    reasons: tuple[str, ...] = ()
    detail: str | None = None
    operator: str | None = None
    request: str | None = None
    planned: bool = False
    severity: str | None = None
    alert: str | None = None


FIELD_NAMES: frozenset[str] = frozenset(f.name for f in fields(Fact))
_TUPLES = frozenset({"peers", "links", "lost_links", "reasons"})
_DEFAULTS = {f.name: f.default for f in fields(Fact)}


def fact_fields(fact: Fact) -> dict[str, Any]:
    """The fields that differ from their defaults, JSON-ready (tuples as lists), without
    `kind` and `by` (journal lines carry those at the top level)."""
    out: dict[str, Any] = {}
    for name, value in asdict(fact).items():
        if name in ("kind", "by") or value == _DEFAULTS[name]:
            continue
        out[name] = list(value) if name in _TUPLES else value
    return out


def fact_from_fields(kind: str, by: str | None, values: dict[str, Any]) -> Fact:
    """A Fact from a journal line's fields; unknown names are left out (a newer writer), and a
    value of the wrong type is dropped rather than trusted (old or hand-edited lines)."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name not in FIELD_NAMES or name in ("kind", "by"):
            continue
        default = _DEFAULTS[name]
        if name in _TUPLES:
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                clean[name] = tuple(value)
        elif isinstance(default, bool):
            if isinstance(value, bool):
                clean[name] = value
        elif name in ("token", "incarnation", "count", "total"):
            if isinstance(value, int) and not isinstance(value, bool):
                clean[name] = value
        elif name in ("duration", "limit"):
            if isinstance(value, int | float) and not isinstance(value, bool):
                clean[name] = float(value)
        elif isinstance(value, str):
            clean[name] = value
    return Fact(kind, by, **clean)


class OfFact:
    """The common fields of a record that wraps a `Fact` in its `fact` attribute (a journal
    `Event`, the simulator's `JournalEntry`), read through."""

    fact: Fact

    @property
    def kind(self) -> str:
        return self.fact.kind

    @property
    def host(self) -> str | None:
        return self.fact.host

    @property
    def vm(self) -> str | None:
        return self.fact.vm

    @property
    def by(self) -> str | None:
        return self.fact.by

    @property
    def token(self) -> int | None:
        return self.fact.token

    @property
    def duration(self) -> float | None:
        return self.fact.duration

    @property
    def planned(self) -> bool:
        return self.fact.planned


# Causes, per kind: the short codes that `cause` may hold (documented in docs/scenarios.md).
CAUSES: dict[str, frozenset[str]] = {
    "vm_stopped": frozenset({
        "lease_moved",  # its record names another host now (the leader moved it)
        "operator",  # an operator stopped it (`vm stop`): planned
        "migrated_away",  # a failed migration left a copy whose lease is elsewhere
        "self_fence",  # destroyed by this host's self-fence
        "fenced",  # destroyed because this host had fenced itself (a late start)
        "shutdown",  # a clean shutdown or reboot of the host: planned
        "relocated",  # the leader gave it to an eligible host, or it kept dying here
        "forced_copy",  # a forced copy, stopped because the store's holder is alive
        "crashed",  # it kept dying: stopped and handed back
    }),
    "self_fence": frozenset({"store_unreachable", "lease_gone"}),
    "failsafe_left": frozenset({"store_back", "broken"}),
    "vm_migrating": frozenset({"maintenance", "degraded", "return", "failback", "operator",
                               "shutdown"}),
    "vm_released": frozenset({"stopped", "handed_back", "holder_fenced"}),
    "vm_migrate_failed": frozenset({"failed", "aborted", "target_fenced"}),
    "link_down": frozenset({"lost", "none_at_start"}),
    "host_shutdown": frozenset({"shutdown", "reboot", "drain"}),
    "vm_recovered": frozenset({"host_lost", "handed_back", "placed"}),
    "force_start": frozenset({"requested", "carried_out", "without_quorum", "claimed"}),
    "waiting_for_quorum": frozenset({"no_quorum", "no_identity", "identity"}),
}


EVENT_KINDS: dict[str, str] = {
    # --- the scenario contract's kinds
    "heartbeat_lost": "an observer hears a peer on none of its heartbeat links",
    "jeopardy": "a host is heard on only some of its heartbeat links",
    "link_down": "a NIC lost carrier",
    "link_up": "a NIC has carrier again",
    "link_flapping": "a NIC lost and regained carrier repeatedly",
    "host_suspect": "the leader hears a host on no link (directly or through peers)",
    "host_fenced": "a host is proven not to run VMs (fence agent or watchdog rule)",
    "self_fence": "a host stopped its VMs because it could not keep its lease",
    "fence_agent_ok": "a fence agent confirmed its target off",
    "fence_agent_failed": "a fence agent failed or did not answer in time",
    "lease_expired": "the leader found another host's lease gone from the store",
    "vm_started": "a hypervisor started a VM",
    "vm_stopped": "a hypervisor stopped or destroyed a VM",
    "vm_migrated": "a VM moved by live migration",
    "vm_recovered": "the leader moved a VM's lease to a new host",
    "vm_verified": "a moved VM answered its check",
    "vm_verify_failed": "a moved VM did not answer its check",
    "waiting_for_quorum": "a host can not reach a store majority and starts nothing",
    "quorum_gained": "a host reaches the store again after it lost it",
    "quorum_lost": "a host can no longer reach the store",
    "failsafe_entered": "store lost by everyone, every host hears every other: VMs kept",
    "failsafe_left": "the store is back, or failsafe could not hold",
    "failsafe_vouched": "a host in failsafe hears a peer reach the store and vouch for its "
                        "lease there: it keeps its VMs until it reaches the store itself or "
                        "the vouched time runs out",
    "preexisting_split_brain": "start-up found evidence that two histories diverged",
    "host_ineligible": "a host failed a fitness check and receives no VM",
    "host_degraded": "early warnings on a host (flaps, corrected memory errors)",
    "nic_renamed": "an interface came up under a new name (same MAC)",
    "storage_unwritable": "a datastore write probe failed",
    "force_start": "an operator forced a VM on",
    "force_start_refused": "an operator's forced start was refused",
    "alert_sent": "an alert went out",
    "alert_delivered": "an alert route acknowledged an alert (or a dead-man ping again)",
    "alert_failed": "an alert route failed an alert after its retries, refused it (rate "
                    "limit), or a dead-man ping failed",
    "alert_resolved": "the incident an alert was about resolved: the leader queued the "
                      "alert's resolution for its routes",
    "route_test_failed": "an alert route failed its scheduled self-test (first of a run)",
    "route_test_passed": "an alert route passed its self-test again after failing",
    "monitor_down": "a monitored system (monitors:) stopped answering its check",
    "monitor_up": "a monitored system answers its check again",
    "incident_opened": "an incident was opened",
    "incident_resolved": "an incident was resolved",
    # --- ringfence's own
    "host_joined": "a host registered a new incarnation: it holds a fresh lease",
    "lease_lost": "a host found its own lease gone from the store (it fences itself)",
    "heartbeat_restored": "a peer is heard on every link again",
    "host_alive": "a suspect host is heard again",
    "host_shutdown": "a host shut down or rebooted cleanly",
    "manager_elected": "a host became the cluster's leader",
    "fence_started": "the leader started a fence agent",
    "watchdog_reset": "a host's watchdog expired and reset it",
    "vm_pending": "a VM has no place to run",
    "vm_start_failed": "a hypervisor refused to start a VM",
    "vm_stop_failed": "a hypervisor failed to stop a VM",
    "hypervisor_error": "the hypervisor could not be asked",
    "storage_writable": "a datastore passes its write probe again",
    "host_healthy": "a host passes every fitness check again",
    "memory_errors": "new corrected memory errors were reported",
    "vm_crashed": "a VM died on its host",
    "vm_restarted": "a VM was restarted in place after it died",
    "vm_released": "a host stopped a VM and handed it back (or confirmed it stopped)",
    "vm_failed": "a VM kept dying and was left stopped",
    "force_start_pending": "a forced start without quorum waits for fences",
    "force_start_waiting": "a forced start waits for the VM's move in flight to end",
    "rejoin_blocked": "a host that left a failsafe cluster waits to hear its peers",
    "rejoin_allowed": "a host that left a failsafe cluster hears its peers again",
    "vm_migrating": "the leader started a live migration (maintenance, evacuation, failback)",
    "vm_migrate_failed": "a live migration failed; the VM stays where it was",
    "vm_migrate_refused": "an operator's migration was refused",
    "maintenance_on": "an operator put a host in maintenance",
    "maintenance_off": "an operator took a host out of maintenance",
    "operator_refused": "an operator action could not be carried out",
    "operator_request": "an operator asked for an action (the CLI or the API)",
    "watchdog_missing": "an agent runs without a watchdog (--unsafe-no-watchdog)",
    "vm_adopted": "a VM of the cluster file got its first lease record",
    "vm_stop_requested": "an operator asked for a VM to be stopped; the leader took it",
    "vm_start_requested": "an operator asked for a stopped VM to run again",
    "reboot_overdue": "a cleanly rebooted host did not come back in time: its VMs move",
    "store_foreign": "a host refuses a store that answers but is not this cluster's store",
    "store_bootstrapped": "a host created the cluster identity in an empty store",
    "heartbeat_unbound": "a heartbeat network's address is not on this host at start: that "
                         "link stays down until it is",
    "store_conflict": "a host hears peers that joined another store than its own: it starts "
                      "and moves nothing while that lasts",
    "execution_gap": "a host's agent did not run for a while (a hang, or the agent stopped)",
    "cycle_overrun": "a decision cycle took longer than its budget (what took the time)",
    "store_forgotten": "an operator made a host forget the store it belonged to (--forget-store)",
    "vm_stranded": "a VM stays on an ineligible host: no eligible host can take it",
    "vm_relocating": "the leader gave a VM of an ineligible host to an eligible one: the "
                     "holder stops it, then the new host starts it",
}
