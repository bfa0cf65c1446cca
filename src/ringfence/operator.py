"""Operator actions: `ringfence vm start|stop|migrate|reset|force-start` and
`ringfence host maintenance NAME on|off`.

Every action is a request written to the store (so it needs the store's quorum); the leader
carries it out under the safety rules and journals it with the operator's name. Nothing here
starts or stops a VM itself.

The one exception is a forced start without quorum (seed 004: a node that can reach neither
its partner nor the quorum server): the request then goes to the agent of the host it must
run on, through a file in that agent's state directory, and the agent applies its own rules
(every other host confirmed down, none of them heard, power-fenced where a fence agent
exists). The command waits for the agent's answer in its journal. When that agent's own
journal says it has no quorum (`agent_without_quorum`), the store is not tried first: its
answer would only be a refusal after its whole deadline, and the agent tries the store itself
first anyway when it holds a lease.

Audit: each request gets an id (printed, e.g. ``request r-3f9c0a1b2c4d``), written with the
request and, in the same transaction, as an audit note that the leader journals with the
operator's name (`core.audit`); the events of its outcome carry the same id and name, so
`ringfence journal export --operator NAME` shows both. The operator is ``--operator``, else the
login name.

Exit codes: 0 done or accepted, 1 refused (with the reason, e.g. the first operator's name), 2
bad input (unknown VM or host, no cluster file).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringfence.agent.journal import journal_file, read_journal
from ringfence.config import ClusterConfig, load_cluster
from ringfence.core import leases
from ringfence.core.audit import audit_put, new_request_id
from ringfence.core.forced import force_request_key
from ringfence.errors import ConfigError
from ringfence.status import find_config
from ringfence.store.base import Compare, Delete, Put, Store, StoreUnavailable

FORCE_WAIT = 60.0
JOURNAL_TAIL = 1 << 20  # bytes of the agent's journal read for its latest quorum state
NO_QUORUM_KINDS = frozenset({"quorum_lost", "waiting_for_quorum", "self_fence",
                             "failsafe_entered"})
QUORUM_KINDS = frozenset({"quorum_gained", "host_joined", "host_shutdown"})


def _open(config_path: str | None) -> tuple[ClusterConfig, Store]:
    from ringfence.store.factory import open_cluster_store

    config = load_cluster(find_config(config_path))
    return config, open_cluster_store(config)


def _check_vm(config: ClusterConfig, vm: str) -> None:
    names = [v.name for v in config.vms]
    if vm not in names:
        raise ConfigError(f"unknown VM {vm!r}; the cluster's VMs: {', '.join(names)}")


def _check_host(config: ClusterConfig, host: str, option: str = "host") -> None:
    names = [h.name for h in config.hosts]
    if host not in names:
        where = f"--{option}: " if option else ""
        raise ConfigError(f"{where}unknown host {host!r}; the cluster's hosts: "
                          f"{', '.join(names)}")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


@dataclass(frozen=True)
class Submitted:
    """What writing one operator request did (the part the CLI and the API share).

    `request` is the id written with the request and its audit note (None when nothing was
    written); `refused` the reason when the request was refused at once (a conflicting request
    pending, the record changed meanwhile, no store quorum); `message` the sentence for
    people. `no_quorum` says the refusal is the store's (a forced start then has its path
    without quorum)."""

    action: str
    subject: str
    request: str | None
    message: str
    refused: str | None = None
    no_quorum: bool = False

    @property
    def written(self) -> bool:
        return self.request is not None and self.refused is None


def _no_quorum(action: str, subject: str, exc: StoreUnavailable) -> Submitted:
    reason = f"the store has no quorum ({exc})"
    return Submitted(action, subject, None, f"refused: {reason}", reason, no_quorum=True)


def _print(submitted: Submitted, store: Store | None = None, wait: float = 0.0) -> int:
    """Say what was written; with `wait` > 0, then wait (at most that long) for the outcome
    in the journal the hosts mirror into the store (`ringfence.outcomes`): exit 0 when done
    or still under way, 1 when refused (by the request itself or, later, by the leader)."""
    _say(submitted.message)
    if submitted.refused is not None:
        return 1
    if wait <= 0 or store is None or submitted.request is None:
        return 0
    from ringfence.outcomes import store_entries, wait_for_outcome

    outcome = wait_for_outcome(submitted.request, lambda: store_entries(store), timeout=wait)
    if outcome.status == "refused":
        _say(f"refused: {outcome.reason}")
        return 1
    if outcome.status == "done":
        _say(f"done: {outcome.reason}")
    elif outcome.status == "accepted":
        _say(f"accepted by the leader, still under way after {wait:g}s (follow request "
             f"{submitted.request} in `ringfence journal export --store`)")
    else:
        _say(f"no leader has taken request {submitted.request} within {wait:g}s (is the "
             f"cluster running? the request stays in the store)")
    return 0


def submit_maintenance(config: ClusterConfig, store: Store, host: str, on: bool,
                       who: str) -> Submitted:
    """Put `host` in maintenance (its VMs are drained) or take it out. Raises ConfigError for
    an unknown host; never raises StoreUnavailable (a refusal)."""
    _check_host(config, host, "")
    key = leases.host_maintenance_key(host)
    request = new_request_id()
    action = "maintenance_on" if on else "maintenance_off"
    try:
        if on:
            store.txn([], [Put(key, {"by": who, "reason": "maintenance", "request": request}),
                           audit_put("maintenance_on", who, request, host=host)])
            text = (f"{host} is in maintenance: its VMs are drained by live migration "
                    f"(watch `ringfence status`); request {request}")
        else:
            store.txn([], [Delete(key), audit_put("maintenance_off", who, request, host=host)])
            text = f"{host} is back in service: VMs drained from it return; request {request}"
    except StoreUnavailable as exc:
        return _no_quorum(action, host, exc)
    return Submitted(action, host, request, text)


def maintenance(config_path: str | None, host: str, on: bool, operator: str | None, *,
                wait: float = 0.0) -> int:
    config, store = _open(config_path)
    return _print(submit_maintenance(config, store, host, on, operator or getpass.getuser()),
                  store, wait)


def _audit_refusal(store: Store, note: Put) -> None:
    """Leave the audit note of a request refused at once (the leader journals it, as it does
    every request's). Best effort: the refusal stands whether or not the note is written."""
    with contextlib.suppress(StoreUnavailable):
        store.txn([], [note])


def submit_migrate(config: ClusterConfig, store: Store, vm: str, target: str,
                   who: str) -> Submitted:
    """Ask the leader to live-migrate `vm` to `target` (it checks room and refuses with the
    reason in the journal). Raises ConfigError for an unknown VM or host."""
    _check_vm(config, vm)
    _check_host(config, target, "to")
    request = new_request_id()
    try:
        result = store.txn([Compare.absent(leases.migrate_request_key(vm))],
                           [Put(leases.migrate_request_key(vm),
                                {"to": target, "by": who, "request": request}),
                            audit_put("operator_request", who, request, vm=vm, target=target,
                                      reason=f"migrate {vm} to {target}")])
    except StoreUnavailable as exc:
        return _no_quorum("migrate", vm, exc)
    if not result.succeeded:
        reason = f"a migration of {vm} is already pending"
        _audit_refusal(store, audit_put("vm_migrate_refused", who, request, vm=vm,
                                        target=target, reason=reason))
        return Submitted("migrate", vm, None, f"refused: {reason}", reason)
    return Submitted("migrate", vm, request,
                     f"migration of {vm} to {target} requested: the leader checks room and "
                     f"moves it; request {request}")


def migrate(config_path: str | None, vm: str, target: str, operator: str | None, *,
            wait: float = 0.0) -> int:
    config, store = _open(config_path)
    return _print(submit_migrate(config, store, vm, target, operator or getpass.getuser()),
                  store, wait)


def _rewrite_owner(config: ClusterConfig, store: Store, action: str, vm: str,
                   change: Callable[[dict[str, Any] | None], dict[str, Any] | str],
                   done: str, audit: Put) -> Submitted:
    """Read `vm`'s owner record, let `change` return the new record (or a message saying there
    is nothing to do: then nothing is written and nothing refused), and write it by
    compare-and-set on the record read, with its audit note."""
    _check_vm(config, vm)
    key = leases.vm_owner_key(vm)
    try:
        kv = store.get(key)
        value = change(dict(kv.value) if kv else None)
        if isinstance(value, str):
            return Submitted(action, vm, None, value)
        result = store.txn([Compare.unchanged(key, kv.mod_revision if kv else 0)],
                           [Put(key, value), audit])
    except StoreUnavailable as exc:
        return _no_quorum(action, vm, exc)
    if not result.succeeded:
        reason = f"{vm}'s record changed meanwhile; try again"
        return Submitted(action, vm, None, f"refused: {reason}", reason)
    request = str(audit.value["request"])
    return Submitted(action, vm, request, f"{done}; request {request}")


def submit_stopped(config: ClusterConfig, store: Store, vm: str, stopped: bool,
                   who: str) -> Submitted:
    """`vm stop`: the VM's record says it must not run (its holder stops it, nobody restarts
    it). `vm start`: it may run again (placement and admission control decide where)."""
    request = new_request_id()

    def change(record: dict[str, Any] | None) -> dict[str, Any] | str:
        value = record or {"host": None}
        if not stopped:
            if "stopped_by" not in value:
                return f"{vm} is not stopped by an operator: nothing to do"
            value.pop("stopped_by")
            value.update(started_by=who, request=request)
            return value
        value.pop("started_by", None)
        value.update(stopped_by=who, request=request)
        value.pop("after", None)
        if value.get("host"):
            value["after"] = value["host"]  # the holder confirms it stopped the VM
        value["host"] = None
        return value

    kind = "vm_stop_requested" if stopped else "vm_start_requested"
    return _rewrite_owner(config, store, "stop" if stopped else "start", vm, change,
                          f"{vm}: {'stop' if stopped else 'start'} requested",
                          audit_put(kind, who, request, vm=vm))


def set_stopped(config_path: str | None, vm: str, stopped: bool, operator: str | None, *,
                wait: float = 0.0) -> int:
    config, store = _open(config_path)
    return _print(submit_stopped(config, store, vm, stopped, operator or getpass.getuser()),
                  store, wait)


def submit_reset(config: ClusterConfig, store: Store, vm: str, who: str) -> Submitted:
    """`vm reset`: forget where the VM failed (`avoid`) and how often it was moved
    (`relocations`), so that a VM left stopped after it kept dying is placed again."""
    request = new_request_id()

    def change(record: dict[str, Any] | None) -> dict[str, Any] | str:
        if record is None or not {"avoid", "relocations"} & set(record):
            return f"{vm} has no failure history to forget"
        value = {k: v for k, v in record.items() if k not in ("avoid", "relocations", "reason")}
        value["reset_by"] = who
        return value

    return _rewrite_owner(config, store, "reset", vm, change,
                          f"{vm}: failure history forgotten; it may run on any host again",
                          audit_put("operator_request", who, request, vm=vm,
                                    reason=f"reset {vm}'s failure history"))


def reset(config_path: str | None, vm: str, operator: str | None, *,
          wait: float = 0.0) -> int:
    config, store = _open(config_path)
    return _print(submit_reset(config, store, vm, operator or getpass.getuser()), store, wait)


def _check_force(config: ClusterConfig, vm: str, host: str, confirm_down: list[str]) -> None:
    _check_vm(config, vm)
    _check_host(config, host)
    for down in confirm_down:
        _check_host(config, down, "confirm-down")


def submit_force(config: ClusterConfig, store: Store, vm: str, host: str,
                 confirm_down: list[str], who: str) -> Submitted:
    """A forced start with quorum: a request the leader turns into an audited lease change.
    Without quorum the answer is a refusal with `no_quorum` set (the CLI then hands the
    request to the local agent). Raises ConfigError for an unknown VM or host."""
    _check_force(config, vm, host, confirm_down)
    request = new_request_id()
    try:
        value = {"host": host, "operator": who, "confirm_down": confirm_down,
                 "request": request}
        result = store.txn([Compare.absent(force_request_key(vm))],
                           [Put(force_request_key(vm), value),
                            audit_put("operator_request", who, request, vm=vm, target=host,
                                      reason=f"force {vm} on {host}")])
        if not result.succeeded:
            first = store.get(force_request_key(vm))
            info = first.value if first else {}
            reason = (f"a forced start of {vm} by {info.get('operator')} onto "
                      f"{info.get('host')} is already pending")
            _audit_refusal(store, audit_put("force_start_refused", who, request, vm=vm,
                                            host=host, reason=reason))
            return Submitted("force_start", vm, None, f"refused: {reason}", reason)
    except StoreUnavailable as exc:
        return _no_quorum("force_start", vm, exc)
    return Submitted("force_start", vm, request,
                     f"{who} forces {vm} onto {host} (with quorum: the leader moves its "
                     f"lease, audited); request {request}")


def force_start(config_path: str | None, vm: str, host: str, confirm_down: list[str],
                operator: str | None, state_dir: Path, *, wait: float = 0.0) -> int:
    config, store = _open(config_path)
    who = operator or getpass.getuser()
    since = agent_without_quorum(state_dir, host)
    if since is not None:
        _check_force(config, vm, host, confirm_down)
        stamp = time.strftime("%H:%M:%S", time.localtime(since))
        _say(f"{host}'s agent has had no store quorum since {stamp} (its journal): not "
             f"waiting for the store")
        return _force_without_quorum(state_dir, host, vm, who, confirm_down)
    submitted = submit_force(config, store, vm, host, confirm_down, who)
    if not submitted.no_quorum:
        return _print(submitted, store, wait)
    return _force_without_quorum(state_dir, host, vm, who, confirm_down)


def agent_without_quorum(state_dir: Path, host: str) -> float | None:
    """When `host`'s agent last said it lost (or could not reach) the store's quorum, by the
    latest quorum event of its own journal in `state_dir`; None when its latest says it has
    the store, it stopped cleanly since, or there is no journal (then the store is asked)."""
    tail = read_journal(journal_file(state_dir, host), tail=JOURNAL_TAIL)
    for entry in reversed(tail):
        if not isinstance(entry, dict) or entry.get("host") != host:
            continue
        kind = entry.get("kind")
        if kind in QUORUM_KINDS or (kind == "failsafe_left" and entry.get("cause") == "store_back"):
            return None
        if kind in NO_QUORUM_KINDS:
            stamp = entry.get("t")
            return float(stamp) if isinstance(stamp, (int, float)) else time.time()
    return None


def _force_without_quorum(state_dir: Path, host: str, vm: str, who: str,
                          confirm_down: list[str]) -> int:
    """No quorum: hand the request to the local agent and wait for its verdict."""
    inbox = state_dir / "requests"
    inbox.mkdir(parents=True, exist_ok=True)
    request = inbox / f"force-{vm}.json"
    if request.exists():
        first = json.loads(request.read_text())
        _say(f"refused: a forced start of {vm} by {first.get('operator')} is already waiting "
             f"for the agent")
        return 1
    started = time.time()
    tmp = request.with_suffix(".tmp")
    tmp.write_text(json.dumps({"vm": vm, "host": host, "operator": who,
                               "confirm_down": confirm_down}))
    tmp.rename(request)
    _say(f"no store quorum: asked {host}'s agent to force {vm} on (it fences the hosts you "
         f"confirmed down where it can)")
    journal = journal_file(state_dir, host)
    while time.time() - started < FORCE_WAIT:
        for entry in read_journal(journal):
            if entry.get("vm") != vm or entry.get("t", 0) < started - 1:
                continue
            if entry["kind"] == "force_start":
                _say(f"done: {entry['text']}")
                return 0
            if entry["kind"] == "force_start_refused":
                _say(f"refused: {entry['text']}")
                return 1
        time.sleep(0.2)
    _say(f"no answer from {host}'s agent within {FORCE_WAIT:g}s: is it running? (the request "
         f"stays in {request})")
    return 1
