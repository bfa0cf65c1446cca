"""Forced start: an operator overrides the cluster to run a VM on a host (seed 004).

With quorum (this host reaches the store) a forced start is a request in the store,
`requests/force/<vm>`, created only if none is pending (a second, conflicting request is
refused with the first one's operator and target). The leader turns it into a normal lease
change under the usual rules, audited with the operator's name.

Without quorum the operator must name every other host that could run the VM in
`confirm_down`. The request is refused if any of them is heard on heartbeats (it is not
down). Hosts with a power fence are fenced off first and must be confirmed off; only then does
the VM start, without a lease (token 0), recorded on this host's disk. Two operators forcing
the same VM on both sides of a split: each side fences the other, and the fence race is
decided deterministically, as Pacemaker's `priority-fencing-delay` does: the host that last
held the VM's lease fences at once, any other waits `FORCE_RACE_DELAY` per rank, so the
winner has powered the loser off before the loser's fence fires. Without a fence agent, the
operator's word that a host is down is all there is: that is the one case where ringfence
can not prevent a split brain, and the journal says so.

When the store is back, the forced VM is written into the store as this host's lease, by
compare-and-set on the record we last saw and on the old holder having no live lease; if that
fails the old holder is alive and may run the VM too: our copy stops and the evidence is
journaled (`preexisting_split_brain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ringfence.core import leases
from ringfence.fence.base import FenceHandle
from ringfence.hypervisor.base import HypervisorError
from ringfence.store.base import Compare, Put, StoreUnavailable

if TYPE_CHECKING:
    from ringfence.core.agent import Agent

FORCE_RACE_DELAY = 5.0
HELD_KEY = "last_held"  # local state: the VMs this host ran when it last fenced itself
REQUESTS_PREFIX = "requests/force/"


def force_request_key(vm: str) -> str:
    return f"{REQUESTS_PREFIX}{vm}"


@dataclass
class PendingForce:
    vm: str
    operator: str
    confirm_down: list[str]
    fire_at: float
    fences: dict[str, FenceHandle | None] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    fence_started: float | None = None


class ForcedStarts:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.host = agent.host
        self.parts = agent.parts
        self.pending: dict[str, PendingForce] = {}

    def _refuse(self, vm: str, why: str, operator: str | None = None) -> str:
        self.parts.journal.record("force_start_refused", host=self.host, vm=vm, reason=why,
                                  operator=operator)
        return f"refused: {why}"

    def request(self, now: float, vm: str, operator: str, confirm_down: list[str]) -> str:
        """An operator on this host asks to force `vm` on here. Returns what happened."""
        if vm not in self.agent.manager.vm_specs:
            return self._refuse(vm, f"unknown VM {vm}", operator=operator)
        record = self.parts.local_state.get(f"forced/{vm}") if self.parts.local_state else None
        if vm in self.pending or record is not None:
            first = (self.pending[vm].operator if vm in self.pending
                     else (record or {}).get("operator"))
            return self._refuse(vm, f"{vm} is already being forced on {self.host} by {first}",
                                operator=operator)
        if self.agent.lease_id is not None:
            try:
                return self._request_with_quorum(vm, operator, confirm_down)
            except StoreUnavailable:
                pass
        return self._request_without_quorum(now, vm, operator, confirm_down)

    def _request_with_quorum(self, vm: str, operator: str, confirm_down: list[str]) -> str:
        store = self.parts.store
        value = {"host": self.host, "operator": operator, "confirm_down": confirm_down}
        result = store.txn([Compare.absent(force_request_key(vm))],
                           [Put(force_request_key(vm), value)])
        if not result.succeeded:
            first = store.get(force_request_key(vm))
            who = first.value if first else {}
            return self._refuse(vm, f"a forced start of {vm} by {who.get('operator')} onto "
                                    f"{who.get('host')} is already pending",
                                operator=operator)
        self.parts.journal.record("force_start", host=self.host, vm=vm, cause="requested",
                                  operator=operator)
        return "accepted"

    def _request_without_quorum(self, now: float, vm: str, operator: str,
                                confirm_down: list[str]) -> str:
        others = [h for h in self.agent.manager.host_names if h != self.host]
        missing = [h for h in others if h not in confirm_down]
        if missing:
            return self._refuse(vm, f"no quorum: confirm_down must name every other host that "
                                    f"could run {vm}; missing: {', '.join(missing)}",
                                operator=operator)
        heard = [h for h in others if self.agent.membership.hears(h)]
        if heard:
            return self._refuse(vm, f"no quorum, and {', '.join(heard)} is not down: "
                                    f"{self.host} hears its heartbeats",
                                operator=operator)
        rank = 0 if self._held_last(vm) else 1 + self.agent.manager.host_names.index(self.host)
        fenced = {h: None for h in others if h in self.parts.fence_agents}
        self.pending[vm] = PendingForce(vm, operator, list(confirm_down),
                                        now + rank * FORCE_RACE_DELAY, dict(fenced))
        plan = (f"fencing {', '.join(fenced)} first" if fenced else
                f"no fence agent for {', '.join(others)}: trusting {operator}'s word that "
                f"it is down")
        self.parts.journal.record("force_start_pending", host=self.host, vm=vm,
                                  operator=operator, reason=plan, peers=tuple(fenced))
        return "pending"

    def _held_last(self, vm: str) -> bool:
        """Did this host hold `vm`'s lease last, as far as it knows (across reboots)?"""
        owner = self.agent.vms.records.get(vm)
        if owner is not None:
            return bool(owner.value.get("host") == self.host)
        held = self.parts.local_state.get(HELD_KEY) if self.parts.local_state else None
        return vm in (held or {}).get("vms", [])

    def tick(self, now: float) -> None:
        for vm in sorted(self.pending):
            job = self.pending[vm]
            if now < job.fire_at:
                continue
            heard = [h for h in job.confirm_down if self.agent.membership.hears(h)]
            if heard:
                del self.pending[vm]
                self._refuse(vm, f"{', '.join(heard)} came back before {vm} was forced on",
                             operator=job.operator)
                continue
            if not self._fences_done(now, job):
                continue
            del self.pending[vm]
            self._start(now, job)

    def _fences_done(self, now: float, job: PendingForce) -> bool:
        done = True
        if job.fence_started is None:
            job.fence_started = now
        late = now - job.fence_started >= self.agent.timing.fence_timeout
        for host, handle in sorted(job.fences.items()):
            if handle is None:
                job.fences[host] = self.parts.fence_agents[host].fence(host, "off")
                self.parts.journal.record("fence_started", host=host, action="off",
                                          operator=job.operator, vm=job.vm,
                                          reason=f"{job.operator}'s forced start of {job.vm}")
                done = False
                continue
            result = handle.result()
            if result is None:
                if late:
                    handle.cancel()  # stopped, never to act later; refused once it says so
                done = False
            elif result.ok:
                if host not in job.confirmed:
                    job.confirmed.add(host)
                    self.parts.journal.record("fence_agent_ok", host=host,
                                              detail=result.detail)
            else:
                del self.pending[job.vm]
                self._refuse(job.vm, f"fencing {host} failed: {result.detail}",
                             operator=job.operator)
                return False
        return done

    def _start(self, now: float, job: PendingForce) -> None:
        try:
            self.parts.hypervisor.start(job.vm, 0)
        except HypervisorError as exc:
            self._refuse(job.vm, f"the hypervisor refused: {exc}", operator=job.operator)
            return
        self.agent.vms.forced.add(job.vm)
        self.agent.vms.verifying[job.vm] = now
        if self.parts.local_state is not None:
            self.parts.local_state.put(f"forced/{job.vm}", {
                "operator": job.operator, "confirm_down": job.confirm_down})
        self.parts.journal.record("force_start", host=self.host, vm=job.vm,
                                  cause="without_quorum", operator=job.operator,
                                  peers=tuple(job.confirm_down))
        self.parts.alerts.send("critical", f"{job.vm} forced on {self.host} by {job.operator} "
                                           f"without quorum", host=self.host, vm=job.vm)

    def claim(self) -> None:
        """After (re)joining the store: write forced VMs into the store as ours."""
        local = self.parts.local_state
        if local is None:
            return
        for vm in sorted(self.agent.vms.forced):
            record = local.get(f"forced/{vm}") or {}
            try:
                self._claim_one(vm, str(record.get("operator", "?")))
            except StoreUnavailable:
                return
            local.put(f"forced/{vm}", None)
            self.agent.vms.forced.discard(vm)

    def _claim_one(self, vm: str, operator: str) -> None:
        store = self.parts.store
        kv = store.get(leases.vm_owner_key(vm))
        old = kv.value.get("host") if kv else None
        compare = [Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision if kv else 0)]
        if old not in (None, self.host):
            compare.append(Compare.absent(leases.host_lease_key(str(old))))
        result = store.txn(compare, [Put(leases.vm_owner_key(vm),
                                         {"host": self.host, "forced_by": operator})])
        if result.succeeded:
            self.parts.journal.record("force_start", host=self.host, vm=vm,
                                      token=result.revision, cause="claimed",
                                      operator=operator)
            return
        self.agent.vms.stop_all_of(self.parts.clock.now(), [vm],
                                   "the store's holder is alive: stopping the forced copy")
        evidence = (f"{vm} was forced on {self.host} by {operator} while {old} held its lease; "
                    f"{old} is alive in the store. The forced copy is stopped; compare the two "
                    f"histories (writes since the split, last token {kv.mod_revision if kv else 0})"
                    f" before choosing which data to keep")
        self.parts.journal.record("preexisting_split_brain", host=self.host, vm=vm,
                                  detail=evidence)
        self.parts.alerts.send("critical", evidence, host=self.host, vm=vm)
