"""Simulated I/O parts handed to the real `Agent`: clock, transport, hypervisor, watchdog,
fence agents, journal and alerts. Each is a thin window onto the `World`, which owns the state
(so that a host's parts die with its power and its VMs are the world's ground truth)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ringfence.core.events import Fact
from ringfence.core.ports import BoolArray, HeartbeatBatch, HostReading, LeaseReport
from ringfence.fence.base import FenceResult
from ringfence.hypervisor.base import HypervisorError, JobResult

if TYPE_CHECKING:
    from ringfence.sim.world import World


class SimClock:
    """A host's monotonic clock: simulated time, scaled by the host's drift."""

    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.rate = world.clock_rate(host)

    def now(self) -> float:
        return self.world.now * self.rate


class SimTransport:
    """Heartbeats through the simulated switches. Delivery is decided when the receiver
    polls: the latest heartbeat each peer sent gets through on each link that connects them
    now (minus random loss). This keeps a 64-host mesh at a few vector operations per cycle."""

    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.index = world.topology.index(host)
        self.rate = world.clock_rate(host)

    def send(self, heard: BoolArray, flags: int, store: int = 0,
             reports: Mapping[int, LeaseReport] | None = None) -> int:
        return self.world.heartbeat_sent(self.index, heard, flags, store, reports)

    def receive(self) -> HeartbeatBatch:
        world = self.world
        connected = world.heartbeat_links_to(self.index)  # [sender, link]
        if world.packet_loss > 0:
            connected = connected & (world.rng_np.random(connected.shape) >= world.packet_loss)
        sent = world.last_sent[:, None] * self.rate
        if world.jitter > 0:
            # A heartbeat sent less than its random delay ago has not arrived yet: the
            # receiver still has the one before it (a heartbeat interval older).
            delay = world.rng_np.random(connected.shape) * world.jitter
            late = (world.now - world.last_sent)[:, None] < delay
            sent = np.where(late, sent - world.interval * self.rate, sent)
            seq_in = np.where(late, world.last_seq[:, None] - 1, world.last_seq[:, None])
        else:
            seq_in = np.broadcast_to(world.last_seq[:, None], connected.shape)
        heard_at = np.where(connected, sent, -np.inf)
        valid: BoolArray = np.asarray(connected.any(axis=1))
        # The newest number that got through on any link (a late one: the heartbeat before).
        seqs = np.where(connected, seq_in, 0).max(axis=1, initial=0).astype(np.int64)
        reports = {s: r[self.index] for s in np.flatnonzero(valid).tolist()
                   if (r := world.last_reports[s]) and self.index in r}
        return HeartbeatBatch(heard_at, world.last_payload, valid, world.last_flags,
                              world.last_store, seqs, reports)


class SimJob:
    """A hypervisor job of the simulation: it ends when the world says so."""

    def __init__(self) -> None:
        self.outcome: JobResult | None = None
        self.cancelled = False

    def result(self) -> JobResult | None:
        return self.outcome

    def cancel(self) -> None:
        if self.outcome is None:
            self.cancelled = True
            self.outcome = JobResult(False, "cancelled before it was done: nothing changed")


class SimHypervisor:
    """The host's hypervisor; the domains it runs are the simulation's ground truth. Start,
    stop and migrate are jobs that end after the call latency (a migration also after its
    copy and switchover: `World.migration_time`)."""

    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.host = host

    def _check(self) -> None:
        self.world.calls.charge(self.host, "hypervisor")
        if not self.world.host_runs(self.host):
            raise HypervisorError(f"{self.host} is not running")

    def list_running(self) -> dict[str, int]:
        self._check()
        host = self.world.hosts[self.host]
        return {**host.incoming, **host.domains}  # libvirt lists incoming migrations as active

    def start(self, vm: str, token: int) -> SimJob:
        return self.world.hypervisor_job(self.host, lambda: self.world.vm_start(
            self.host, vm, token))

    def stop(self, vm: str, token: int) -> SimJob:
        return self.world.hypervisor_job(self.host, lambda: self.world.vm_stop(self.host, vm))

    def destroy(self, vm: str) -> None:
        self._check()
        self.world.vm_stop(self.host, vm)

    def migrate(self, vm: str, target: str, token: int) -> SimJob:
        return self.world.migration_job(self.host, vm, target, token)


class SimWatchdog:
    """The hardware watchdog: it belongs to the host, not to the agent, and keeps counting
    while the operating system hangs (unless the hang is of the `frozen` kind)."""

    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.host = host

    def arm(self, timeout: float) -> None:
        self.world.watchdog_arm(self.host, timeout)

    def pet(self) -> None:
        self.world.watchdog_pet(self.host)

    def disarm(self) -> None:
        self.world.watchdog_disarm(self.host)


@dataclass
class SimFenceHandle:
    outcome: FenceResult | None = None
    cancelled: bool = False

    def result(self) -> FenceResult | None:
        return self.outcome

    def cancel(self) -> None:
        """Stopping a simulated fence is immediate: it will not act."""
        if self.outcome is None:
            self.cancelled = True
            self.outcome = FenceResult(False, "fence stopped before it answered")


class SimPowerFence:
    """A power controller out of band: it works whatever the partitions (unless the fencing
    config names a network that the fencing host must reach)."""

    def __init__(self, world: World, fencer: str) -> None:
        self.world = world
        self.fencer = fencer

    def fence(self, host: str, action: Literal["off", "reboot"]) -> SimFenceHandle:
        self.world.calls.charge(self.fencer, "fence")
        handle = SimFenceHandle()
        self.world.power_fence(self.fencer, host, action, handle)
        return handle


class SimProbes:
    """What the host's NICs, datastores and memory controller report."""

    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.host = host

    def read(self) -> HostReading:
        return self.world.probe(self.host)


class SimGuestChecks:
    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.host = host

    def configured(self, vm: str) -> bool:
        return True  # every simulated guest can be asked

    def check(self, vm: str) -> bool | None:
        return self.world.guest_answers(self.host, vm)


class SimLocalState:
    """The host's own disk: survives reboots and power loss."""

    def __init__(self, world: World, host: str) -> None:
        self.disk = world.hosts[host].disk

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.disk.get(key)
        return dict(value) if value is not None else None

    def put(self, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self.disk.pop(key, None)
        else:
            self.disk[key] = dict(value)


class SimJournal:
    """A host's journal in the simulator: the same facts as a real host's (`by` is this host),
    kept by the world in order."""

    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.host = host

    def record(self, kind: str, **fields: Any) -> None:
        self.world.journal_fact(Fact(kind, self.host, **fields))


class SimAlerts:
    def __init__(self, world: World, host: str | None = None) -> None:
        self.world = world
        self.host = host

    def send(self, severity: str, text: str, *, host: str | None = None,
             vm: str | None = None) -> None:
        self.world.alert(severity, text, host=host, vm=vm, by=self.host)
