"""The agent's VM keeper: run exactly the VMs the store assigns to this host.

Ownership lives in `vms/<vm>/owner = {"host": H, "after": A?, ...}`; its mod_revision is the
fencing token every hypervisor call carries. The rules this module follows:

- Start a VM only right after a successful store read in the same cycle, only if the record
  names this host and has no `after` (a previous holder that has not yet confirmed it stopped
  the VM), and only while the host is fit.
- Stop at once any VM that runs here but is not assigned here; then, if the record waits for
  this host (`after` is us), confirm by clearing `after` with a compare-and-set.
- A VM that dies under us (its domain vanished with the token we started it with) is
  restarted in place up to `policy.max_restart` times within `RESTART_WINDOW`; after that the
  VM is *released*: stopped here, then its record rewritten to
  `{"host": None, "avoid": [...]}` with a compare-and-set guarded by our own host lease. The
  manager then places it elsewhere. Releasing is safe because the holder itself does it after
  stopping the VM.
- An unfit host (ineligible by its own probes) starts nothing and keeps what runs: the manager
  moves those VMs to an eligible host when one has room, and leaves them where they are
  (alerting) when none has.
- After every start the guest's check runs until it answers (`vm_verified`) or
  `VERIFY_DEADLINE` passes (`vm_verify_failed`, alert).

Store unreachable: nothing starts; VMs already running keep running (the lease rules in
`core.agent` decide when that must stop).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ringfence.core import leases
from ringfence.hypervisor.base import HypervisorError
from ringfence.store.base import Compare, KeyValue, Put, StoreUnavailable

if TYPE_CHECKING:
    from ringfence.core.agent import Agent

RESTART_WINDOW = 600.0
VERIFY_DEADLINE = 120.0


@dataclass(frozen=True, slots=True)
class Assignment:
    token: int
    after: str | None


class VmKeeper:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.host = agent.host
        self.parts = agent.parts
        self.policy = agent.config.policy
        self.records: dict[str, KeyValue] = {}
        self.owned: dict[str, Assignment] = {}
        self.revision = -1
        self.confirmed_revision = -1  # the records we last checked for handovers
        self.seen: dict[str, int] = {}  # VMs seen running here, with their token
        self.restarts: dict[str, deque[float]] = {}
        self.verifying: dict[str, float] = {}
        self.forced: set[str] = set()  # VMs an operator forced on here without a lease

    # ----------------------------------------------------------------- reading
    def refresh(self) -> bool:
        """Re-read the owner records if the store changed. False if the store is unreachable
        (then nothing may start this cycle)."""
        store = self.parts.store
        try:
            revision = store.revision()
            if revision != self.revision:
                result = store.get_prefix(leases.VMS_PREFIX)
                self.records = {kv.key.split("/")[1]: kv for kv in result.items
                                if kv.key.endswith("/owner")}
                self.revision = result.revision
                self.owned = {
                    vm: Assignment(kv.mod_revision, kv.value.get("after"))
                    for vm, kv in self.records.items() if kv.value.get("host") == self.host
                }
        except StoreUnavailable:
            return False
        return True

    # ----------------------------------------------------------------- the cycle
    def reconcile(self, now: float, *, fresh_read: bool, unfit: str | None,
                  may_start: bool = True) -> None:
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError as exc:
            self.parts.journal.record("hypervisor_error", host=self.host, text=str(exc))
            return
        for vm in sorted(running):
            if vm in self.owned or vm in self.forced:
                continue
            kv = self.records.get(vm)
            if (fresh_read and kv is not None and kv.value.get("after") == self.host
                    and kv.value.get("migrate") and self._migrate_out(vm, kv)):
                running.pop(vm)
                continue
            self._stop(vm, running[vm], "its lease is no longer held here")
            running.pop(vm)
        if fresh_read and self.revision != self.confirmed_revision:
            self.confirmed_revision = self.revision
            self._confirm_handovers(running)
        for vm in sorted(running):
            if vm in self.owned and vm not in self.seen and vm not in self.verifying:
                self.verifying[vm] = now  # arrived by live migration: check it answers here
        crashed = [vm for vm, token in sorted(self.seen.items())
                   if vm not in running and self.owned.get(vm, Assignment(-1, None)).token
                   == token]
        self.seen = {vm: t for vm, t in running.items()}
        for vm in crashed:
            self._crashed(now, vm)
        if unfit is not None:
            # An unfit host starts nothing; what runs here stays until the manager finds an
            # eligible host for it (`Manager._evacuate_unfit`), or for good if none exists.
            return
        if not fresh_read or not may_start:
            return
        for vm, assignment in sorted(self.owned.items()):
            if assignment.after is not None or running.get(vm) == assignment.token:
                continue
            if vm in crashed and not self._may_restart(now, vm):
                continue
            self._start(now, vm, assignment.token, restart=vm in crashed,
                        retoken=vm in running)

    def _confirm_handovers(self, running: dict[str, int]) -> None:
        """Records that wait for us to stop a VM: we do not run it (any more), so say so."""
        for vm, kv in sorted(self.records.items()):
            if kv.value.get("after") != self.host or vm in running:
                continue
            value = {k: v for k, v in kv.value.items() if k != "after"}
            if not self._write_owner(vm, kv, value):
                self.confirmed_revision = -1  # try again next cycle
                continue
            self.parts.journal.record(
                "vm_released", host=self.host, vm=vm,
                text=f"{vm} is stopped on {self.host}: {value.get('host')} may start it")

    def _migrate_out(self, vm: str, kv: KeyValue) -> bool:
        """The manager moves `vm` from here to another host by live migration. Returns True
        if it now runs there; on failure the lease comes back here and the VM keeps running."""
        target = str(kv.value.get("host"))
        try:
            self.parts.hypervisor.migrate(vm, target, kv.mod_revision)
        except HypervisorError as exc:
            back = {k: v for k, v in kv.value.items() if k not in ("after", "migrate", "home")}
            back["host"] = self.host
            if self._write_owner(vm, kv, back):
                self.parts.journal.record("vm_migrate_failed", host=self.host, vm=vm,
                                          text=f"{vm} could not move to {target}: {exc}; it "
                                               f"keeps running on {self.host}")
                self.parts.alerts.send("warning", f"migration of {vm} to {target} failed: "
                                                  f"{exc}", host=self.host, vm=vm)
                return True  # still here, and ours again: nothing to stop
            return False
        self.seen.pop(vm, None)
        self.verifying.pop(vm, None)
        done = {k: v for k, v in kv.value.items() if k not in ("after", "migrate")}
        self._write_owner(vm, kv, done)
        self.parts.journal.record("vm_migrated", host=target, vm=vm, token=kv.mod_revision,
                                  text=f"{vm} live-migrated from {self.host} to {target}")
        return True

    def _crashed(self, now: float, vm: str) -> None:
        self.parts.journal.record("vm_crashed", host=self.host, vm=vm,
                                  text=f"{vm} died on {self.host}")

    def _may_restart(self, now: float, vm: str) -> bool:
        window = self.restarts.setdefault(vm, deque())
        while window and window[0] < now - RESTART_WINDOW:
            window.popleft()
        if len(window) < self.policy.max_restart:
            window.append(now)
            return True
        self.release(vm, f"{vm} died {len(window) + 1} times on {self.host} within "
                         f"{RESTART_WINDOW:g}s", crash=True)
        return False

    # ----------------------------------------------------------------- actions
    def _start(self, now: float, vm: str, token: int, *, restart: bool, retoken: bool) -> None:
        try:
            self.parts.hypervisor.start(vm, token)
        except HypervisorError as exc:
            self.parts.journal.record("vm_start_failed", host=self.host, vm=vm, text=str(exc))
            return
        self.seen[vm] = token
        if retoken:
            return
        self.parts.journal.record(
            "vm_restarted" if restart else "vm_started", host=self.host, vm=vm, token=token,
            text=f"{vm} {'restarted' if restart else 'started'} on {self.host} (token {token})")
        self.verifying[vm] = now

    def _stop(self, vm: str, token: int, why: str) -> bool:
        try:
            self.parts.hypervisor.stop(vm, token)
        except HypervisorError as exc:
            self.parts.journal.record("vm_stop_failed", host=self.host, vm=vm, text=str(exc))
            return False
        self.seen.pop(vm, None)
        self.verifying.pop(vm, None)
        self.parts.journal.record("vm_stopped", host=self.host, vm=vm, token=token or None,
                                  text=f"{vm} stopped on {self.host}: {why}")
        return True

    def release(self, vm: str, why: str, *, crash: bool) -> bool:
        """Stop `vm` here and hand it back to the manager, avoiding this host."""
        kv = self.records.get(vm)
        if kv is None or kv.value.get("host") != self.host:
            return False
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError:
            return False
        if vm in running and not self._stop(vm, running[vm], why):
            return False
        avoid = sorted({*kv.value.get("avoid", []), self.host})
        value: dict[str, Any] = {"host": None, "from": self.host, "avoid": avoid,
                                 "reason": why,
                                 "relocations": int(kv.value.get("relocations", 0)) + crash}
        if not self._write_owner(vm, kv, value):
            return False
        self.owned.pop(vm, None)
        self.parts.journal.record("vm_released", host=self.host, vm=vm,
                                  text=f"{vm} handed back by {self.host}: {why}")
        return True

    def _write_owner(self, vm: str, kv: KeyValue, value: dict[str, Any]) -> bool:
        lease = self.agent.lease_id
        try:
            result = self.parts.store.txn(
                [Compare(leases.host_lease_key(self.host), "lease", lease),
                 Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision)],
                [Put(leases.vm_owner_key(vm), value)])
        except StoreUnavailable:
            return False
        return result.succeeded

    def destroy_all(self) -> list[str]:
        """Self-fence: pull the plug on everything, at once. Returns what was running."""
        hypervisor = self.parts.hypervisor
        try:
            running = sorted(hypervisor.list_running())
        except HypervisorError:
            running = sorted(self.owned)
        for vm in running:
            try:
                hypervisor.destroy(vm)
                self.parts.journal.record("vm_stopped", host=self.host, vm=vm,
                                          text=f"{vm} destroyed by self-fence")
            except HypervisorError as exc:
                self.parts.journal.record(
                    "vm_stop_failed", host=self.host, vm=vm,
                    text=f"{vm}: {exc}; the watchdog will reset {self.host}")
        self.seen.clear()
        self.verifying.clear()
        self.forced.clear()
        return running

    def any_running(self) -> bool:
        try:
            return bool(self.parts.hypervisor.list_running())
        except HypervisorError:
            return True  # can not tell: assume the worst

    def stop_all_of(self, vms: list[str], why: str) -> None:
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError:
            return
        for vm in vms:
            if vm in running:
                self._stop(vm, running[vm], why)
            self.forced.discard(vm)

    def stop_all(self, why: str) -> int:
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError:
            return 0
        stopped = sum(self._stop(vm, running[vm], why) for vm in sorted(running))
        self.forced.clear()
        return stopped

    # ----------------------------------------------------------------- verification
    def verify(self, now: float) -> None:
        checks = self.parts.guest_checks
        if checks is None:
            self.verifying.clear()
            return
        for vm, started in sorted(self.verifying.items()):
            if not checks.configured(vm):
                del self.verifying[vm]
                continue
            answer = checks.check(vm)
            if answer:
                del self.verifying[vm]
                self.parts.journal.record(
                    "vm_verified", host=self.host, vm=vm,
                    text=f"{vm} answers on {self.host}, {now - started:.1f}s after its start")
            elif now - started >= VERIFY_DEADLINE:
                del self.verifying[vm]
                self.parts.journal.record(
                    "vm_verify_failed", host=self.host, vm=vm,
                    text=f"{vm} started on {self.host} but does not answer after "
                         f"{VERIFY_DEADLINE:g}s")
                self.parts.alerts.send("critical", f"{vm} runs on {self.host} but does not "
                                                   f"answer its check", host=self.host, vm=vm)
