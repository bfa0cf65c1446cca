"""`LibvirtHypervisor`: the production driver, through libvirt-python.

Needs the optional extra ``ringfence[libvirt]`` (libvirt-python, built against the host's
libvirt; ``scripts/install-libvirt`` installs both on Debian). Importing this module without it
raises ImportError.

Which domains are ours: an active domain is listed only if it carries ringfence's fencing token
in its metadata,

    <metadata>
      <ringfence:token xmlns:ringfence="https://ringfence.invalid/1">T</ringfence:token>
    </metadata>

so that the agent never touches a VM that ringfence did not start (the agent stops every
listed VM it does not own). `start` writes the token into the persistent definition *before*
it starts the domain, so there is no moment in which a domain we started runs without it; on
an already running domain it rewrites the token live and in the definition (a re-token). A
domain that is unknown to libvirt is defined first from ``domain_xml(vm)``.

`start`, `stop` and `migrate` are jobs (`hypervisor.jobs.ThreadJob`): the agent's cycle
never waits for them. `stop` asks the guest to shut down (ACPI) and destroys it if it still
runs `stop_grace` seconds later. `destroy` pulls the plug at once. A cancelled start that
completed anyway is destroyed again.

`migrate` is a peer-to-peer live migration (``virDomainMigrateToURI3`` with
``VIR_MIGRATE_LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE | ABORT_ON_ERROR``) to the URI
``target_uri(target)`` (default ``qemu+ssh://TARGET/system``; the source libvirtd connects to
the target's). The token is set on the domain first, so it arrives with it. A migration that
runs longer than `migrate_timeout`, or whose job is cancelled, is aborted
(``virDomainAbortJob``): the guest then stays here, unless the switchover already happened.
`stream_uri(target)` (optional) is where QEMU's migration stream goes
(``VIR_MIGRATE_PARAM_URI``, e.g. ``tcp://ADDRESS`` on a dedicated network). The job is a
`MigrationJob`: while it runs, its `progress` holds libvirt's job statistics (polled every
half second), and when it ends, the completed job's statistics (libvirt's job-completed
event): its detail says the downtime, the memory sent and the iterations.
`unsafe_migration` adds ``VIR_MIGRATE_UNSAFE``: libvirt calls a disk "shared storage" only
on a network or cluster file system it knows (NFS, GFS2, Ceph, ...), so the lab, whose hosts
share one local file system, needs it; a real cluster on NFS or Ceph does not.

The token is checked before every action, against the one in the domain's live metadata:
`stop` is refused when the domain runs with another token than the one it is asked to stop
(it was re-tokened or restarted since the caller listed it: the caller lists again); `start`
and `migrate` are refused when the domain runs with a newer token than theirs (the caller's
view is stale), and when a running domain carries no ringfence token (not ours).
`destroy` (the self-fence) checks nothing: it must always be able to pull the plug.

Life-cycle events (`libvirt_events.DomainEvents`, `events`): a domain that stops without this
driver asking (its QEMU killed, the guest crashed) is reported at once by `take_lost()`, and
`changed` is set, so that the agent can run a cycle at once instead of waiting for its next
listing.

Bounded calls: libvirt calls can hang (a wedged libvirtd, an unreachable ssh peer). Every call
runs in a helper thread and is given up after `call_timeout` seconds (`migrate_timeout` for the
migration) with a `HypervisorError` whose outcome is unknown. The connection is then dropped
and, while that call still hangs, every further call fails at once instead of piling up
threads behind it.

Failure semantics (the `Hypervisor` protocol): `HypervisorError` whenever an action failed or
its outcome is unknown; `destroy` of a domain that does not run is not an error; a failed
`migrate` says whether the domain still runs here ("still runs on this host") or may run in
both places.

`close()` drops the connection, deregistering the event callbacks first.

libvirt's default error handler prints every error on stderr; creating a `LibvirtHypervisor`
replaces it (process-wide) with a silent one: errors reach us as exceptions anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import libvirt

from ringfence.hypervisor.base import HypervisorError, JobResult
from ringfence.hypervisor.jobs import ThreadJob
from ringfence.hypervisor.libvirt_events import DomainEvents, ensure_event_loop

__all__ = ["METADATA_KEY", "METADATA_NS", "MIGRATE_FLAGS", "LibvirtHypervisor", "MigrationJob",
           "MigrationProgress", "migration_request", "ssh_uri"]

METADATA_NS = "https://ringfence.invalid/1"
METADATA_KEY = "ringfence"
MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
                 | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
                 | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)

_T = TypeVar("_T")
_TOKEN = re.compile(r"<(?:\w+:)?token\b[^>]*>\s*(-?\d+)\s*</(?:\w+:)?token>")


def ssh_uri(host: str) -> str:
    """The default target URI: the target's system libvirtd over ssh."""
    if not host or any(ch in host for ch in "/?#@ ") or not host.isprintable():
        raise ValueError(f"not a host name for a libvirt URI: {host!r}")
    return f"qemu+ssh://{host}/system"


def migration_request(target: str, target_uri: Callable[[str], str] = ssh_uri,
                      bandwidth_mib: int | None = None, *, stream_uri: str | None = None,
                      unsafe: bool = False) -> tuple[str, dict[str, Any], int]:
    """The arguments of ``virDomainMigrateToURI3`` for a migration to `target`:
    (destination URI, typed parameters, flags)."""
    uri = target_uri(target)
    params: dict[str, Any] = {}
    if bandwidth_mib is not None:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = bandwidth_mib
    if stream_uri is not None:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = stream_uri
    return uri, params, MIGRATE_FLAGS | (libvirt.VIR_MIGRATE_UNSAFE if unsafe else 0)


class MigrationProgress:
    """What a running migration has done so far (`latest`: libvirt's ``jobStats`` of the
    source's job) and, once it ended, the completed job's statistics (`completed`)."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.completed: dict[str, Any] = {}

    def summary(self) -> str:
        stats = self.completed or self.latest
        parts = []
        if "downtime" in stats:
            parts.append(f"downtime {int(stats['downtime'])} ms")
        if "memory_processed" in stats:
            parts.append(f"{int(stats['memory_processed']) >> 20} MiB sent")
        if "memory_iteration" in stats:
            parts.append(f"{int(stats['memory_iteration'])} iterations")
        if "time_elapsed" in stats:
            parts.append(f"{int(stats['time_elapsed'])} ms in all")
        return ", ".join(parts)


class MigrationJob(ThreadJob):
    """A migration's job, with its `progress` (see `MigrationProgress`)."""

    def __init__(self, name: str, work: Callable[[MigrationProgress], str], *,
                 abort: Callable[[], None], on_done: Callable[[], None] | None = None) -> None:
        self.progress = MigrationProgress()
        super().__init__(name, lambda: work(self.progress), abort=abort, on_done=on_done)

    def result(self) -> JobResult | None:
        """The job's result, with the downtime libvirt measured once the migration is done."""
        result = super().result()
        downtime = self.progress.completed.get("downtime")
        if result is None or not result.ok or downtime is None:
            return result
        return dataclasses.replace(result, downtime=float(downtime) / 1000)


def _token_xml(token: int) -> str:
    return f"<token>{int(token)}</token>"


def _code(exc: libvirt.libvirtError) -> int:
    code = exc.get_error_code()
    return int(code) if code is not None else -1


def _silent(_context: object, _error: object) -> None:
    return None


class LibvirtHypervisor:
    """`Hypervisor` over the libvirt connection `uri`; see the module docstring.

    `domain_xml(vm)`: the domain XML to define `vm` from when libvirt does not know it.
    `target_uri(host)`: the libvirt URI of another host, for migration.
    """

    def __init__(self, uri: str, domain_xml: Callable[[str], str], *,
                 target_uri: Callable[[str], str] = ssh_uri, stop_grace: float = 60.0,
                 call_timeout: float = 10.0, migrate_timeout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 stream_uri: Callable[[str], str] | None = None,
                 unsafe_migration: bool = False, events: bool = True,
                 on_job_done: Callable[[], None] | None = None) -> None:
        self.uri = uri
        self.on_job_done = on_job_done  # called when a job ends (`ThreadJob(on_done=...)`)
        self.stream_uri = stream_uri
        self.unsafe_migration = unsafe_migration
        self.events = DomainEvents()
        self.changed = self.events.changed
        self._want_events = events
        if events:
            ensure_event_loop()
        self.domain_xml = domain_xml
        self.target_uri = target_uri
        self.stop_grace = stop_grace
        self.call_timeout = call_timeout
        self.migrate_timeout = migrate_timeout
        self.clock = clock
        self._connection: Any = None
        self._hung: tuple[threading.Thread, str, float] | None = None
        libvirt.registerErrorHandler(_silent, None)

    # ------------------------------------------------------------------ bounded calls
    def _bounded(self, what: str, fn: Callable[[], _T], timeout: float | None = None,
                 *, exclusive: bool = True) -> _T:
        if exclusive and self._hung is not None:
            thread, hung_what, since = self._hung
            if thread.is_alive():
                raise HypervisorError(f"libvirt hangs: {hung_what} has not returned for "
                                      f"{time.monotonic() - since:.0f}s")
            self._hung = None
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=run, name=f"libvirt {what}", daemon=True)
        thread.start()
        thread.join(self.call_timeout if timeout is None else timeout)
        if thread.is_alive():
            self._hung = (thread, what, time.monotonic())
            self._connection = None
            raise HypervisorError(f"{what}: libvirt did not answer within "
                                  f"{self.call_timeout if timeout is None else timeout:g}s; "
                                  f"outcome unknown")
        if "error" in box:
            error = box["error"]
            if isinstance(error, libvirt.libvirtError):
                raise error
            raise HypervisorError(f"{what}: {error!r}") from error
        value: _T = box["value"]
        return value

    def _conn(self) -> Any:
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if self._bounded("isAlive", connection.isAlive) == 1:
                    return connection
        try:
            connection = self._bounded(f"connect {self.uri}", lambda: libvirt.open(self.uri))
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"can not connect to {self.uri}: {exc}") from exc
        if self._want_events:
            try:
                self._bounded("register events", lambda: self.events.attach(connection))
            except libvirt.libvirtError as exc:
                raise HypervisorError(f"{self.uri} refuses domain events: {exc}") from exc
        self._connection = connection
        return connection

    def take_lost(self) -> dict[str, str]:
        """Domains that stopped since the last call without this driver asking, with why
        (from libvirt's life-cycle events)."""
        return self.events.take_lost()

    def _check_token(self, domain: Any, vm: str, token: int, action: str, *,
                     exact: bool) -> None:
        """Refuse `action` on running `vm` when its token says the caller's view is stale
        (see the module docstring)."""
        if not self._active(domain, vm):
            return
        current = self._token(domain, vm)
        if current is None:
            raise HypervisorError(f"{vm} runs without a ringfence token: not ours, "
                                  f"refusing to {action} it")
        if (current != token) if exact else (current > token):
            raise HypervisorError(f"{vm} runs with token {current}, not {token}: refusing to "
                                  f"{action} it (list again)")

    def _lookup(self, vm: str) -> Any:
        """The domain `vm`, or None if libvirt does not know it."""
        connection = self._conn()
        try:
            return self._bounded(f"lookup {vm}", lambda: connection.lookupByName(vm))
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise HypervisorError(f"{vm}: {exc}") from exc

    def _token(self, domain: Any, name: str) -> int | None:
        """The token in the live definition of a running domain; None if it has none."""
        try:
            xml = self._bounded(f"metadata {name}", lambda: domain.metadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS,
                libvirt.VIR_DOMAIN_AFFECT_LIVE))
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise
        match = _TOKEN.search(str(xml))
        return int(match.group(1)) if match else -1

    def _set_token(self, domain: Any, vm: str, token: int, flags: int) -> None:
        self._bounded(f"set token of {vm}", lambda: domain.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, _token_xml(token), METADATA_KEY, METADATA_NS,
            flags))

    def _active(self, domain: Any, vm: str) -> bool:
        return bool(self._bounded(f"isActive {vm}", domain.isActive))

    # ------------------------------------------------------------------ protocol
    def list_running(self) -> dict[str, int]:
        """Active (running or paused) domains that carry a ringfence token. A token that is
        not a number reads as -1 (the agent then re-tokens the domain)."""
        connection = self._conn()
        try:
            domains = self._bounded("list domains", lambda: connection.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"can not list domains of {self.uri}: {exc}") from exc
        running: dict[str, int] = {}
        for domain in domains:
            try:
                name = str(self._bounded("domain name", domain.name))
                token = self._token(domain, name)
            except libvirt.libvirtError as exc:
                if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # gone since the listing
                raise HypervisorError(f"can not read a domain of {self.uri}: {exc}") from exc
            if token is not None:
                running[name] = token
        return running

    def start(self, vm: str, token: int) -> ThreadJob:
        return ThreadJob(f"start {vm}", lambda: self._start_now(vm, token),
                         undo=lambda: self.destroy(vm), on_done=self.on_job_done)

    def _start_now(self, vm: str, token: int) -> str:
        domain = self._lookup(vm)
        try:
            if domain is None:
                try:
                    xml = self.domain_xml(vm)
                except Exception as exc:
                    raise HypervisorError(f"{vm}: no domain XML: {exc}") from exc
                connection = self._conn()
                domain = self._bounded(f"define {vm}", lambda: connection.defineXML(xml))
                defined = str(self._bounded("domain name", domain.name))
                if defined != vm:
                    raise HypervisorError(f"the domain XML for {vm} defines {defined!r}")
            if self._active(domain, vm):
                self._check_token(domain, vm, token, "start", exact=False)
                if self._token(domain, vm) != token:
                    self._set_token(domain, vm, token, libvirt.VIR_DOMAIN_AFFECT_LIVE
                                    | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                return f"{vm} runs with token {token}"
            self._set_token(domain, vm, token, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            # A start that fails half-way (QEMU launched, then refused a lock) stops the
            # domain: that stop is this start's failure, not a lost guest.
            self.events.expect_stop(vm, 2 * self.call_timeout)
            self._bounded(f"start {vm}", domain.create)
            self.events.done_stopping(vm)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"can not start {vm}: {exc}") from exc
        return f"{vm} started"

    def close(self) -> None:
        """Drop the connection (its event callbacks first). Bounded; never raises. A later
        call connects again."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(libvirt.libvirtError, HypervisorError):
            self._bounded("deregister events", lambda: self.events.detach(connection),
                          exclusive=False)
        with contextlib.suppress(libvirt.libvirtError, HypervisorError):
            self._bounded("close", connection.close, exclusive=False)

    def stop(self, vm: str, token: int) -> ThreadJob:
        """Ask the guest to shut down; destroy it if it still runs `stop_grace` seconds
        later (a job)."""
        return ThreadJob(f"stop {vm}", lambda: self._stop_now(vm, token),
                         on_done=self.on_job_done)

    def _stop_now(self, vm: str, token: int) -> str:
        domain = self._lookup(vm)
        if domain is None:
            return f"{vm} is not defined"
        try:
            if not self._active(domain, vm):
                return f"{vm} does not run"
            self._check_token(domain, vm, token, "stop", exact=True)
            self.events.expect_stop(vm, self.stop_grace + 2 * self.call_timeout)
            self._bounded(f"shutdown {vm}", domain.shutdown)
            deadline = self.clock() + self.stop_grace
            while self.clock() < deadline:
                if not self._active(domain, vm):
                    return f"{vm} shut down"
                time.sleep(0.2)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"can not shut {vm} down: {exc}") from exc
        self.destroy(vm)
        return f"{vm} did not shut down within {self.stop_grace:g}s: destroyed"

    def destroy(self, vm: str) -> None:
        domain = self._lookup(vm)
        if domain is None:
            return
        self.events.expect_stop(vm, 2 * self.call_timeout)
        try:
            self._bounded(f"destroy {vm}", domain.destroy)
        except libvirt.libvirtError as exc:
            try:
                still = self._active(domain, vm)
            except libvirt.libvirtError:
                still = True
            if still:
                raise HypervisorError(f"can not destroy {vm}: {exc}") from exc

    def migrate(self, vm: str, target: str, token: int) -> MigrationJob:
        def abort() -> None:
            domain = self._lookup(vm)
            if domain is not None:
                with contextlib.suppress(libvirt.libvirtError, HypervisorError):
                    self._bounded(f"abort migration of {vm}", domain.abortJob,
                                  exclusive=False)

        return MigrationJob(f"migrate {vm} to {target}",
                            lambda progress: self._migrate_now(vm, target, token, progress),
                            abort=abort, on_done=self.on_job_done)

    def _migrate_now(self, vm: str, target: str, token: int,
                     progress: MigrationProgress | None = None) -> str:
        progress = progress if progress is not None else MigrationProgress()
        domain = self._lookup(vm)
        if domain is None:
            raise HypervisorError(f"{vm} is not defined on {self.uri}")
        try:
            uri, params, flags = migration_request(
                target, self.target_uri,
                stream_uri=self.stream_uri(target) if self.stream_uri else None,
                unsafe=self.unsafe_migration)
        except ValueError as exc:
            raise HypervisorError(f"{vm}: {exc}") from exc
        try:
            if not self._active(domain, vm):
                raise HypervisorError(f"{vm} does not run on {self.uri}")
            self._check_token(domain, vm, token, "migrate", exact=False)
            self._set_token(domain, vm, token, libvirt.VIR_DOMAIN_AFFECT_LIVE
                            | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"can not prepare {vm} for migration: {exc}") from exc
        self.events.forget_completed(vm)
        self.events.expect_stop(vm, self.migrate_timeout + 2 * self.call_timeout)
        done = threading.Event()
        threading.Thread(target=self._poll_progress, args=(domain, progress, done),
                         name=f"progress {vm}", daemon=True).start()
        try:
            self._bounded(f"migrate {vm} to {target}",
                          lambda: domain.migrateToURI3(uri, params, flags),
                          self.migrate_timeout)
        except libvirt.libvirtError as exc:
            done.set()
            self.events.done_stopping(vm)
            raise HypervisorError(self._after_failed_migration(domain, vm, target, exc)) from exc
        except HypervisorError as exc:  # timed out: abort the job, then see where it runs
            done.set()
            self.events.done_stopping(vm)
            hung = self._hung
            with contextlib.suppress(libvirt.libvirtError, HypervisorError):
                self._bounded(f"abort migration of {vm}", domain.abortJob, exclusive=False)
            if hung is not None:
                hung[0].join(self.call_timeout)  # an aborted migration returns soon
            raise HypervisorError(self._after_failed_migration(domain, vm, target, exc)) from exc
        done.set()
        progress.completed = self._completed_stats(domain, vm)
        summary = progress.summary()
        return f"{vm} live-migrated to {target}" + (f": {summary}" if summary else "")

    def _poll_progress(self, domain: Any, progress: MigrationProgress,
                       done: threading.Event) -> None:
        """libvirt's statistics of the running migration, every half second (its own
        thread: the migration call blocks the job's)."""
        while not done.wait(0.5):
            with contextlib.suppress(libvirt.libvirtError, HypervisorError):
                stats = self._bounded("migration progress", domain.jobStats, exclusive=False)
                if stats and done.is_set() is False:
                    progress.latest = dict(stats)

    def _completed_stats(self, domain: Any, vm: str) -> dict[str, Any]:
        """The finished migration's statistics: from the job-completed event (it may come a
        moment after the call returned), else asked of the source while it still knows."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            stats = self.events.completed(vm)
            if stats:
                return stats
            time.sleep(0.05)
        with contextlib.suppress(libvirt.libvirtError, HypervisorError):
            stats = self._bounded("completed job statistics", lambda: domain.jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED), exclusive=False)
            return dict(stats or {})
        return {}

    def _after_failed_migration(self, domain: Any, vm: str, target: str,
                                exc: Exception) -> str:
        try:
            here = self._active(domain, vm)
        except (libvirt.libvirtError, HypervisorError):
            here = None
        if here:
            return f"migration of {vm} to {target} failed, it still runs on this host: {exc}"
        return (f"migration of {vm} to {target} failed and it is not known to run here any "
                f"more: it may run on {target} (treat as running in both places): {exc}")
