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
  VM is *released*: stopped here, then its record rewritten to `{"host": None, "avoid":
  [...]}` with a compare-and-set guarded by our own host lease. The manager then places it
  elsewhere. Releasing is safe because the holder itself does it after stopping the VM.
- An unfit host (ineligible by its own probes) starts nothing and keeps what runs: the manager
  moves those VMs to an eligible host when one has room, and leaves them where they are
  (alerting) when none has.
- After every start the guest's check runs until it answers (`vm_verified`) or
  `VERIFY_DEADLINE` passes (`vm_verify_failed`, alert).

Starts, stops and live migrations are hypervisor *jobs* (`hypervisor.base.HypervisorJob`): the
keeper starts one, goes on, and finishes it (journal, store) in the cycle that finds it done.
A VM with a job in flight gets no other action. A live migration keeps the guest running here
until its switchover; if this host's lease gets close to its self-fence deadline first (the
store went away mid-migration), the migration is aborted, so that exactly one copy runs when
the deadline comes. A self-fence cancels every job and destroys every VM.

Store unreachable: nothing starts; VMs already running keep running (the lease rules in
`core.agent` decide when that must stop).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ringfence.core import leases
from ringfence.hypervisor.base import HypervisorError, HypervisorJob, JobResult
from ringfence.store.base import Compare, KeyValue, Put, StoreUnavailable

if TYPE_CHECKING:
    from ringfence.core.agent import Agent


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

RESTART_WINDOW = 600.0
VERIFY_DEADLINE = 120.0


@dataclass(frozen=True, slots=True)
class Assignment:
    token: int
    after: str | None


@dataclass
class Job:
    """A hypervisor action in flight for one VM."""

    kind: Literal["start", "stop", "migrate"]
    handle: HypervisorJob
    token: int
    since: float
    why: str = ""
    stop: dict[str, Any] = field(default_factory=dict)  # stop: the vm_stopped fields (cause..)
    restart: bool = False  # start: after the VM died here
    retoken: bool = False  # start: the VM runs, only its token changes
    record: KeyValue | None = None  # migrate: the owner record it carries out
    release: dict[str, Any] | None = field(default=None)  # stop: then hand back, this record
    aborted: bool = False


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
        self.lost_reasons: dict[str, str] = {}  # why VMs stopped, from life-cycle events
        self.verifying: dict[str, float] = {}
        self.forced: set[str] = set()  # VMs an operator forced on here without a lease
        self.jobs: dict[str, Job] = {}
        self.left: set[str] = set()  # VMs that left this host in this cycle (stop, migration)
        self.polling = False

    # ----------------------------------------------------------------- reading
    def refresh(self) -> bool:
        """Re-read the owner records if the store changed. False if the store is unreachable
        (then nothing may start this cycle)."""
        store = self.parts.store
        try:
            revision = self.agent.revision()
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
        self.poll_jobs(now)
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError as exc:
            self.parts.journal.record("hypervisor_error", host=self.host, detail=str(exc))
            return
        self._note_lost(running)
        self.left.clear()
        for vm in sorted(running):
            if vm in self.owned or vm in self.forced or vm in self.jobs:
                continue
            kv = self.records.get(vm)
            if (fresh_read and kv is not None and kv.value.get("after") == self.host
                    and kv.value.get("migrate")):
                self._migrate_out(now, vm, kv, running[vm])
                continue
            self._stop(now, vm, running[vm], **self._why_stopped(kv))
        for vm in self.left:  # stopped or migrated away already (a job that ended at once)
            running.pop(vm, None)
        if fresh_read and self.revision != self.confirmed_revision:
            self._confirm_handovers(running)
        # A record still in a move (`after`) is a live migration arriving here: the domain
        # listed is libvirt's paused copy, not yet a guest that answers, nor one that can
        # crash (if the copy fails, it just goes). Only a settled record counts.
        settled = {vm: a for vm, a in self.owned.items() if a.after is None}
        for vm in sorted(running):
            if (vm in settled and vm not in self.seen and vm not in self.verifying
                    and vm not in self.jobs):
                self.verifying[vm] = now  # arrived by live migration: check it answers here
        crashed = [vm for vm, token in sorted(self.seen.items())
                   if vm not in running and vm not in self.jobs
                   and settled.get(vm, Assignment(-1, None)).token == token]
        self.seen = {vm: t for vm, t in running.items() if vm in settled or vm not in self.owned}
        for vm in crashed:
            self._crashed(now, vm)
        if unfit is not None:
            # An unfit host starts nothing; what runs here stays until the manager finds an
            # eligible host for it (`Manager._evacuate_unfit`), or for good if none exists.
            return
        if not fresh_read or not may_start:
            return
        for vm, assignment in sorted(self.owned.items()):
            if (assignment.after is not None or running.get(vm) == assignment.token
                    or vm in self.jobs):
                continue
            if vm in crashed and not self._may_restart(now, vm):
                continue
            self._start(now, vm, assignment.token, restart=vm in crashed,
                        retoken=vm in running)

    def _confirm_handovers(self, running: dict[str, int]) -> None:
        """Records that wait for us to stop a VM: we do not run it (any more), so say so.
        Until every such record is confirmed, the next cycles look again (a stop that is
        still under way ends later)."""
        self.confirmed_revision = self.revision
        for vm, kv in sorted(self.records.items()):
            if kv.value.get("after") != self.host:
                continue
            if vm in running or vm in self.jobs:
                self.confirmed_revision = -1  # still here: look again next cycle
                continue
            value = {k: v for k, v in kv.value.items() if k != "after"}
            if not self._write_owner(vm, kv, value):
                self.confirmed_revision = -1  # try again next cycle
                continue
            target = value.get("host")
            self.parts.journal.record("vm_released", host=self.host, vm=vm, cause="stopped",
                                      target=target if isinstance(target, str) else None)

    def _crashed(self, now: float, vm: str) -> None:
        self.parts.journal.record("vm_crashed", host=self.host, vm=vm,
                                  reason=self.lost_reasons.pop(vm, None))

    def _note_lost(self, running: dict[str, int]) -> None:
        """Why VMs stopped, where the hypervisor's life-cycle events said (libvirt's driver:
        "its QEMU process died", "the guest crashed"), for the crash to say. Best effort: the
        event may come after the listing that shows the VM gone. A reason is forgotten once
        its VM runs again, so that it never explains a later crash."""
        take_lost = getattr(self.parts.hypervisor, "take_lost", None)
        if callable(take_lost):
            self.lost_reasons.update(take_lost())
        for vm in running:
            self.lost_reasons.pop(vm, None)

    def _may_restart(self, now: float, vm: str) -> bool:
        window = self.restarts.setdefault(vm, deque())
        while window and window[0] < now - RESTART_WINDOW:
            window.popleft()
        if len(window) < self.policy.max_restart:
            window.append(now)
            return True
        self.release(now, vm, f"{vm} died {len(window) + 1} times on {self.host} within "
                              f"{RESTART_WINDOW:g}s", crash=True)
        return False

    # ----------------------------------------------------------------- jobs
    def poll_jobs(self, now: float) -> None:
        """Finish the jobs that ended since the last cycle (and those that finishing one
        started and that ended at once). Not re-entered: a job started while finishing
        another is finished by the same loop."""
        if self.polling:
            return
        self.polling = True
        try:
            finished = True
            while finished:
                finished = False
                for vm in sorted(self.jobs):
                    job = self.jobs.get(vm)
                    result = job.handle.result() if job is not None else None
                    if job is None or result is None:
                        continue
                    del self.jobs[vm]
                    finished = True
                    if job.kind == "start":
                        self._started(now, vm, job, result)
                    elif job.kind == "stop":
                        self._stopped(now, vm, job, result)
                    else:
                        self._migrated(now, vm, job, result)
        finally:
            self.polling = False

    def abort_migrations(self, why: str) -> None:
        """This host's lease is about to go stale: give up every live migration out of here
        (the guest stays here, the one copy; the self-fence then stops it)."""
        for vm, job in sorted(self.jobs.items()):
            if job.kind == "migrate" and not job.aborted:
                job.aborted = True
                job.handle.cancel()
                self.parts.journal.record("vm_migrate_failed", host=self.host, vm=vm,
                                          cause="aborted", reason=why, source=self.host)

    def _start(self, now: float, vm: str, token: int, *, restart: bool, retoken: bool) -> None:
        if self.agent.mode != "active":
            return  # self-fenced while this cycle waited in a call: start nothing
        self.jobs[vm] = Job("start", self.parts.hypervisor.start(vm, token), token, now,
                            restart=restart, retoken=retoken)
        self.poll_jobs(now)

    def _started(self, now: float, vm: str, job: Job, result: JobResult) -> None:
        if not result.ok:
            self.parts.journal.record("vm_start_failed", host=self.host, vm=vm,
                                      detail=result.detail)
            return
        self.seen[vm] = job.token
        if job.retoken:
            return
        kind = "vm_restarted" if job.restart else "vm_started"
        self.parts.journal.record(kind, host=self.host, vm=vm, token=job.token)
        self.verifying[vm] = now

    def _stop(self, now: float, vm: str, token: int, cause: str, *, reason: str | None = None,
              release: dict[str, Any] | None = None, **audit: Any) -> None:
        """Stop `vm` (a job). `cause` and `reason` (`CAUSES["vm_stopped"]`), and any audit
        fields (`operator`, `request`, `planned`), go into its `vm_stopped`."""
        stop = {"cause": cause, "reason": reason, **audit}
        self.jobs[vm] = Job("stop", self.parts.hypervisor.stop(vm, token), token, now,
                            reason or cause, stop=stop, release=release)
        self.poll_jobs(now)

    def _why_stopped(self, kv: KeyValue | None) -> dict[str, Any]:
        """Why a VM that runs here without its lease is stopped, from its record."""
        value = kv.value if kv is not None else {}
        stopped_by = value.get("stopped_by")
        if isinstance(stopped_by, str):
            request = value.get("request")
            return {"cause": "operator", "operator": stopped_by, "planned": True,
                    "request": request if isinstance(request, str) else None}
        if value.get("after") == self.host:
            return {"cause": "relocated", "reason": f"{value.get('host')} takes it over"}
        return {"cause": "lease_moved"}

    def _stopped(self, now: float, vm: str, job: Job, result: JobResult) -> None:
        if not result.ok:
            self.parts.journal.record("vm_stop_failed", host=self.host, vm=vm,
                                      detail=result.detail)
            return
        self.seen.pop(vm, None)
        self.verifying.pop(vm, None)
        self.left.add(vm)
        self.parts.journal.record("vm_stopped", host=self.host, vm=vm, token=job.token or None,
                                  **job.stop)
        if job.release is not None:
            self._hand_back(vm, job.release, job.why)

    def _migrate_out(self, now: float, vm: str, kv: KeyValue, token: int) -> None:
        """The manager moves `vm` from here to another host by live migration."""
        if self.agent.mode != "active" or self.agent.failsafe:
            return
        target = str(kv.value.get("host"))
        self.jobs[vm] = Job("migrate", self.parts.hypervisor.migrate(vm, target, kv.mod_revision),
                            kv.mod_revision, now, record=kv)
        self.poll_jobs(now)

    def _migrated(self, now: float, vm: str, job: Job, result: JobResult) -> None:
        kv = job.record
        assert kv is not None
        target = str(kv.value.get("host"))
        if not result.ok:
            self._migration_failed(now, vm, kv, target, result.detail)
            return
        self.seen.pop(vm, None)
        self.verifying.pop(vm, None)
        self.left.add(vm)
        done = {k: v for k, v in kv.value.items() if k not in ("after", "migrate", "cause")}
        self._write_owner(vm, kv, done)
        self.parts.journal.record("vm_migrated", host=target, vm=vm, token=kv.mod_revision,
                                  source=self.host, target=target, duration=result.downtime,
                                  cause=_text(kv.value.get("cause")),
                                  planned=kv.value.get("cause") != "degraded")

    def _migration_failed(self, now: float, vm: str, kv: KeyValue, target: str,
                          why: str) -> None:
        """The lease comes back here and the VM keeps running; if the record can not be
        written back, the VM is stopped (it is no longer ours)."""
        back = {k: v for k, v in kv.value.items()
                if k not in ("after", "migrate", "home", "cause")}
        back["host"] = self.host
        if self._write_owner(vm, kv, back):
            self.parts.journal.record("vm_migrate_failed", host=self.host, vm=vm,
                                      cause="failed", detail=why, source=self.host,
                                      target=target)
            self.parts.alerts.send("warning", f"migration of {vm} to {target} failed: {why}",
                                   host=self.host, vm=vm)
            return
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError:
            return  # the next cycle decides, with a fresh listing
        if vm in running and vm not in self.owned:
            self._stop(now, vm, running[vm], "migrated_away",
                       reason=f"the migration to {target} failed ({why}) and "
                                             f"its lease is no longer held here")

    # ----------------------------------------------------------------- actions
    def release(self, now: float, vm: str, why: str, *, crash: bool) -> bool:
        """Stop `vm` here and hand it back to the manager, avoiding this host."""
        kv = self.records.get(vm)
        if kv is None or kv.value.get("host") != self.host or vm in self.jobs:
            return False
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError:
            return False
        avoid = sorted({*kv.value.get("avoid", []), self.host})
        value: dict[str, Any] = {"host": None, "from": self.host, "avoid": avoid,
                                 "reason": why,
                                 "relocations": int(kv.value.get("relocations", 0)) + crash}
        if vm in running:
            self._stop(now, vm, running[vm], "crashed" if crash else "relocated", reason=why,
                       release=value)
            return True
        return self._hand_back(vm, value, why)

    def _hand_back(self, vm: str, value: dict[str, Any], why: str) -> bool:
        kv = self.records.get(vm)
        if kv is None or not self._write_owner(vm, kv, value):
            return False
        self.owned.pop(vm, None)
        self.parts.journal.record("vm_released", host=self.host, vm=vm, cause="handed_back",
                                  reason=why)
        return True

    def _write_owner(self, vm: str, kv: KeyValue, value: dict[str, Any]) -> bool:
        lease = self.agent.lease_id
        try:
            result = self.parts.store.txn(
                [Compare(leases.host_lease_key(self.host), "lease", lease),
                 Compare.unchanged(leases.vm_owner_key(vm), kv.mod_revision)],
                [Put(leases.vm_owner_key(vm), value)])
        except StoreUnavailable:
            return False  # maybe applied: the next read tells; until then nothing changes
        if result.succeeded:
            # The rest of this cycle must act on the record just written, not on the one it
            # replaced (a failed migration's record, read again, would migrate once more).
            written = replace(kv, value=value, mod_revision=result.revision)
            self.records[vm] = written
            if value.get("host") == self.host:
                self.owned[vm] = Assignment(result.revision, value.get("after"))
            else:
                self.owned.pop(vm, None)
            self.revision = -1  # and the next cycle reads everything again
        return result.succeeded

    def destroy_all(self) -> list[str]:
        """Self-fence: give up every job and pull the plug on everything, at once. Returns
        what was running."""
        for job in self.jobs.values():
            job.handle.cancel()
        self.jobs.clear()
        hypervisor = self.parts.hypervisor
        try:
            running = sorted(hypervisor.list_running())
        except HypervisorError:
            running = sorted(self.owned)
        arriving = self.arriving()
        for vm in running:
            try:
                hypervisor.destroy(vm)
            except HypervisorError as exc:
                self.parts.journal.record("vm_stop_failed", host=self.host, vm=vm,
                                          detail=str(exc), cause="self_fence")
                continue
            if vm in arriving:  # libvirt's paused copy: the guest still runs on the source
                self.parts.journal.record("vm_migrate_failed", host=self.host, vm=vm,
                                          cause="target_fenced", source=arriving[vm],
                                          target=self.host)
            else:
                self.parts.journal.record("vm_stopped", host=self.host, vm=vm,
                                          cause="self_fence")
        self.seen.clear()
        self.verifying.clear()
        self.forced.clear()
        return [vm for vm in running if vm not in arriving]

    def arriving(self) -> dict[str, str]:
        """VMs live-migrating to this host (vm -> source): the record names us as holder
        and still waits for the source."""
        return {vm: str(kv.value["after"]) for vm, kv in self.records.items()
                if kv.value.get("host") == self.host and kv.value.get("after") is not None
                and kv.value.get("migrate")}

    def destroy_leftovers(self) -> None:
        """After a self-fence: anything that runs here anyway (a start that completed after
        it was given up) is destroyed at once."""
        try:
            running = sorted(self.parts.hypervisor.list_running())
        except HypervisorError:
            return
        for vm in running:
            try:
                self.parts.hypervisor.destroy(vm)
                self.parts.journal.record("vm_stopped", host=self.host, vm=vm, cause="fenced")
            except HypervisorError as exc:
                self.parts.journal.record("vm_stop_failed", host=self.host, vm=vm,
                                          detail=str(exc), cause="self_fence")

    def any_running(self) -> bool:
        if self.jobs:
            return True  # a start or a migration may still leave something here
        try:
            return bool(self.parts.hypervisor.list_running())
        except HypervisorError:
            return True  # can not tell: assume the worst

    def stop_all_of(self, now: float, vms: list[str], why: str) -> None:
        """Stop forced copies whose lease holder turned out alive (`forced_copy`)."""
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError:
            return
        for vm in vms:
            if vm in running and vm not in self.jobs:
                self._stop(now, vm, running[vm], "forced_copy", reason=why)
            self.forced.discard(vm)

    def stop_all(self, now: float, why: str) -> None:
        """A clean shutdown (`why`: shutdown or reboot): stop every VM (jobs; `any_running`
        says when they are done). Planned: it opens no incident."""
        for _vm, job in sorted(self.jobs.items()):
            if job.kind != "stop":
                job.handle.cancel()  # a start or migration in flight: given up
        self.poll_jobs(now)
        try:
            running = self.parts.hypervisor.list_running()
        except HypervisorError:
            return
        for vm in sorted(running):
            if vm not in self.jobs:
                self._stop(now, vm, running[vm], "shutdown", reason=why, planned=True)
        self.forced.clear()

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
                self.parts.journal.record("vm_verified", host=self.host, vm=vm,
                                          duration=now - started)
            elif now - started >= VERIFY_DEADLINE:
                del self.verifying[vm]
                self.parts.journal.record("vm_verify_failed", host=self.host, vm=vm,
                                          limit=VERIFY_DEADLINE)
                self.parts.alerts.send("critical", f"{vm} runs on {self.host} but does not "
                                                   f"answer its check", host=self.host, vm=vm)
