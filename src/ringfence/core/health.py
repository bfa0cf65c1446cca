"""Host fitness: may this host receive VMs? Pure policy over probe readings.

A host is `ineligible` while an interface it needs is missing (looked up by MAC: names change
across reboots, seed 001), a VM or storage network has had no carrier for two readings in a
row (seed 000; one reading could be a flap), or a datastore fails its write probe twice in a
row (seed 003). It is `degraded` for `DEGRADED_HOLD` seconds
after an early warning: a NIC whose carrier flapped `FLAP_COUNT` times within `FLAP_WINDOW`
(seed 000: warn before the total loss), or new corrected memory errors (seed 003: the RAM
fault). Otherwise `eligible`.

Nothing here raises; every change of state comes with the journal events that explain it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from ringfence.config import ClusterConfig
from ringfence.core.ports import HostReading, NicReading

FLAP_WINDOW = 60.0
FLAP_COUNT = 4  # carrier changes (two drops and returns) within the window
DEGRADED_HOLD = 600.0
STORAGE_FAILURES = 2  # consecutive failed probes before a datastore counts as unwritable
# How often the real probes write to a datastore (`probes.host.LinuxProbes`). Hosts see a
# storage fault they share up to this much (and a reading or two) apart: the manager lets a
# host's storage-only ineligibility settle that long before it moves VMs (`UNFIT_SETTLE`).
STORAGE_PROBE_EVERY = 3.0
CARRIER_LOSSES = 2  # consecutive readings without carrier before a VM network counts as lost

HealthState = Literal["eligible", "degraded", "ineligible"]


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """What to journal: a kind and its fields (`core.events.Fact`), about this host."""

    kind: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HealthAssessment:
    state: HealthState
    reasons: tuple[str, ...]
    # What the reasons are about, as data: "network" (a NIC missing or without carrier),
    # "storage" (a datastore not writable). The manager waits a moment before it moves VMs off
    # a host that is ineligible for storage only: that fault is often every host's.
    causes: tuple[str, ...] = ()


class HealthMonitor:
    def __init__(self, config: ClusterConfig, host: str) -> None:
        self.host = host
        spec = config.host(host)
        roles = {n.name: set(n.role) for n in config.networks}
        self.networks = config.host_networks(host)
        self.required = [n for n in self.networks if roles[n] & {"vm", "storage"}]
        self.expected = {n: i for n, i in spec.interfaces.items() if i.mac}
        self.names: dict[str, str] = {n: i.name for n, i in self.expected.items() if i.name}
        self.carrier: dict[str, bool] = {}
        self.no_carrier: dict[str, int] = {}  # consecutive readings without carrier
        self.changes: dict[str, int] = {}
        self.flaps: dict[str, deque[float]] = {n: deque() for n in self.networks}
        self.flapping: set[str] = set()
        self.storage_failures: dict[str, int] = {}
        self.unwritable: dict[str, str] = {}
        self.datastores = list(spec.datastores)
        self.memory_errors: int | None = None
        self.degraded_until = float("-inf")
        self.degraded_why = ""
        self.assessment = HealthAssessment("eligible", ())
        self.readings = 0
        self.last_reading: HostReading | None = None
        self.failing_now = False  # any probe failed in the latest reading

    def assess(self, now: float, reading: HostReading) -> list[HealthEvent]:
        """Take one reading; update `assessment`; return what to journal."""
        if (reading == self.last_reading and self.assessment.state == "eligible"
                and not self.flapping and not any(self.flaps.values())
                and not any(self.storage_failures.values())
                and not any(self.no_carrier.values())):
            return []  # the same healthy reading again: nothing can have changed
        self.last_reading = reading
        events: list[HealthEvent] = []
        reasons: list[str] = []
        self.readings += 1
        by_mac = {nic.mac: nic for nic in reading.nics}
        self.failing_now = any(error is not None for error in reading.datastores.values()) or any(
            not by_mac[i.mac].carrier for n, i in self.expected.items()
            if n in self.required and i.mac in by_mac)
        for network in self.networks:
            interface = self.expected.get(network)
            if interface is None or interface.mac is None:
                continue
            nic = by_mac.get(interface.mac)
            if nic is None:
                reasons.append(f"no interface with MAC {interface.mac} for {network}")
                continue
            events += self._identity(network, nic)
            events += self._carrier(now, network, nic)
            self.no_carrier[network] = 0 if nic.carrier else self.no_carrier.get(network, 0) + 1
            if self.no_carrier[network] >= CARRIER_LOSSES and network in self.required:
                reasons.append(f"no carrier on {network} ({nic.name})")
        network_reasons = len(reasons)
        events += self._storage(reading, reasons)
        causes = (("network",) if network_reasons else ()) + (
            ("storage",) if len(reasons) > network_reasons else ())
        # A datastore whose last probe failed stays "failing" until a probe succeeds (a reading
        # may carry no new probe result for it).
        self.failing_now = self.failing_now or any(self.storage_failures.values())
        events += self._memory(now, reading)
        state: HealthState = "eligible"
        if reasons:
            state = "ineligible"
        elif now < self.degraded_until:
            state = "degraded"
            reasons = [self.degraded_why]
        events += self._transition(HealthAssessment(state, tuple(reasons),
                                                    causes if state == "ineligible" else ()))
        return events

    @property
    def settled(self) -> bool:
        """Has a full probe round passed, so that the assessment can be trusted to place VMs
        here? Every datastore has reported, and no failure streak is still undecided (one
        failed probe, or one reading without carrier, on the way to the verdict)."""
        if self.readings == 0:
            return False
        if any(name not in self.storage_failures for name in self.datastores):
            return False
        if any(0 < n < STORAGE_FAILURES for n in self.storage_failures.values()):
            return False
        return not any(0 < self.no_carrier.get(n, 0) < CARRIER_LOSSES for n in self.required)

    @property
    def may_start_vms(self) -> bool:
        """Starting a VM needs a conclusive, clean reading: one failing probe is not yet
        enough to shed VMs (it may be a flap), but it is enough not to start any."""
        return self.readings > 0 and not self.failing_now and self.assessment.state != "ineligible"

    def _identity(self, network: str, nic: NicReading) -> list[HealthEvent]:
        known = self.names.get(network)
        self.names[network] = nic.name
        if known is None or known == nic.name:
            return []
        return [HealthEvent("nic_renamed", {"host": self.host, "network": network,
                                            "mac": nic.mac, "nic": nic.name,
                                            "old_nic": known})]

    def _carrier(self, now: float, network: str, nic: NicReading) -> list[HealthEvent]:
        events: list[HealthEvent] = []
        before = self.carrier.get(network)
        if before is not None and before != nic.carrier:
            kind = "link_up" if nic.carrier else "link_down"
            events.append(HealthEvent(kind, {"host": self.host, "nic": nic.name,
                                             "network": network,
                                             **({} if nic.carrier else {"cause": "lost"})}))
        elif before is None and not nic.carrier:
            events.append(HealthEvent("link_down", {"host": self.host, "nic": nic.name,
                                                    "network": network,
                                                    "cause": "none_at_start"}))
        self.carrier[network] = nic.carrier
        previous = self.changes.get(network, nic.carrier_changes)
        self.changes[network] = nic.carrier_changes
        window = self.flaps[network]
        window.extend([now] * max(0, nic.carrier_changes - previous))
        while window and window[0] < now - FLAP_WINDOW:
            window.popleft()
        if len(window) >= FLAP_COUNT and network not in self.flapping:
            self.flapping.add(network)
            why = (f"{nic.name} ({network}) carrier changed {len(window)} times within "
                   f"{FLAP_WINDOW:g}s")
            self._degrade(now, why)
            events.append(HealthEvent("link_flapping", {
                "host": self.host, "nic": nic.name, "network": network, "count": len(window),
                "duration": FLAP_WINDOW}))
        elif not window:
            self.flapping.discard(network)
        return events

    def _storage(self, reading: HostReading, reasons: list[str]) -> list[HealthEvent]:
        events: list[HealthEvent] = []
        for name, error in sorted(reading.datastores.items()):
            if error is None:
                self.storage_failures[name] = 0
                if self.unwritable.pop(name, None) is not None:
                    events.append(HealthEvent("storage_writable",
                                              {"host": self.host, "datastore": name}))
                continue
            self.storage_failures[name] = self.storage_failures.get(name, 0) + 1
            if self.storage_failures[name] >= STORAGE_FAILURES:
                if name not in self.unwritable:
                    events.append(HealthEvent("storage_unwritable", {
                        "host": self.host, "datastore": name, "detail": error}))
                self.unwritable[name] = error
        reasons += [f"datastore {n} not writable: {e}" for n, e in sorted(self.unwritable.items())]
        return events

    def _memory(self, now: float, reading: HostReading) -> list[HealthEvent]:
        count = reading.corrected_memory_errors
        before, self.memory_errors = self.memory_errors, count
        if before is None or count <= before:
            return []
        why = f"{count - before} new corrected memory errors ({count} since boot)"
        self._degrade(now, why)
        return [HealthEvent("memory_errors", {"host": self.host, "count": count - before,
                                              "total": count})]

    def _degrade(self, now: float, why: str) -> None:
        self.degraded_until = now + DEGRADED_HOLD
        self.degraded_why = why

    def _transition(self, new: HealthAssessment) -> list[HealthEvent]:
        old, self.assessment = self.assessment, new
        if new.state == old.state and new.reasons == old.reasons:
            return []
        kind = {"eligible": "host_healthy", "degraded": "host_degraded",
                "ineligible": "host_ineligible"}[new.state]
        if new.state == old.state == "ineligible" and set(new.reasons) < set(old.reasons):
            return []  # one of several problems went away: still ineligible, nothing new
        return [HealthEvent(kind, {"host": self.host, "reasons": tuple(new.reasons)})]
