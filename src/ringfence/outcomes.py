"""The outcome of an operator request, read from the journal by the request's id.

Every operator request (`ringfence.operator`) carries an id; the leader journals the request
from its audit note, and every event of its outcome carries the same id (`core.audit`). This
module reads those events and says where the request stands:

- ``refused``: a refusal carries the id (`vm_migrate_refused`, `force_start_refused`,
  `operator_refused`); its reason is the answer;
- ``done``: the request's effect is journaled: `maintenance_on` / `maintenance_off` (the
  leader took it: the host's drain then runs on its own), `vm_stopped`, `vm_recovered` (a
  started VM got a host), `force_start` carried out, or the `vm_migrated` that ends the
  `vm_migrating` this request started;
- ``accepted``: the leader took the request but its effect is not journaled yet (a stop in
  progress, a migration copying, a forced start waiting for a move in flight);
- ``pending``: nothing carries the id yet (no leader, or it has not run its cycle).

Classification is pure (:func:`classify`); :func:`wait_for_outcome` polls the journal the hosts
mirror into the store, bounded by its timeout. Failure semantics: a store that does not answer
while waiting leaves the outcome ``pending`` (the request may still be carried out); nothing
here raises for a damaged journal entry (it is skipped).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ringfence.store.base import Store, StoreUnavailable

__all__ = ["Outcome", "Status", "classify", "wait_for_outcome"]

Status = Literal["done", "refused", "accepted", "pending"]

REFUSED_KINDS = frozenset({"vm_migrate_refused", "force_start_refused", "operator_refused"})
DONE_KINDS = frozenset({"maintenance_on", "maintenance_off", "vm_stopped", "vm_recovered"})
ACCEPTED_KINDS = frozenset({"vm_stop_requested", "vm_start_requested", "operator_request",
                            "vm_migrating", "force_start_waiting", "force_start"})
WAIT = 10.0
POLL = 0.25


@dataclass(frozen=True)
class Outcome:
    """Where request `request` stands (see the module docstring)."""

    request: str
    status: Status
    reason: str | None = None  # the refusal's reason, or the done event's text
    events: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


def _text(entry: Mapping[str, Any]) -> str:
    return str(entry.get("reason") or entry.get("text") or entry.get("kind"))


def classify(request: str, entries: Iterable[Mapping[str, Any]]) -> Outcome:
    """The outcome of `request` from journal entries (the lines `FileJournal` writes), in any
    order. Entries without the id count only as the `vm_migrated` that ends this request's
    migration (same VM and token as its `vm_migrating`)."""
    ordered = sorted(entries, key=lambda e: (float(e.get("t", 0) or 0), str(e.get("by")),
                                             int(e.get("seq", 0) or 0)))
    mine = [e for e in ordered if e.get("request") == request]
    migrations = {(e.get("vm"), e.get("token")) for e in mine if e.get("kind") == "vm_migrating"}
    ends = [e for e in ordered if e.get("kind") == "vm_migrated"
            and (e.get("vm"), e.get("token")) in migrations]
    related = tuple(sorted((*mine, *ends), key=lambda e: float(e.get("t", 0) or 0)))
    for entry in related:
        if entry.get("kind") in REFUSED_KINDS:
            return Outcome(request, "refused", _text(entry), related)
    for entry in related:
        kind = entry.get("kind")
        if kind in DONE_KINDS or kind == "vm_migrated" or (
                kind == "force_start" and entry.get("cause") == "carried_out"):
            return Outcome(request, "done", str(entry.get("text") or kind), related)
    if any(e.get("kind") in ACCEPTED_KINDS for e in related):
        return Outcome(request, "accepted", None, related)
    return Outcome(request, "pending", None, related)


def store_entries(store: Store) -> list[dict[str, Any]]:
    """The journal the hosts mirror into the store. Raises StoreUnavailable."""
    from ringfence.journal.store_mirror import read_store_journal

    return read_store_journal(store)


def wait_for_outcome(request: str, entries: Callable[[], Iterable[Mapping[str, Any]]], *,
                     timeout: float = WAIT, poll: float = POLL) -> Outcome:
    """Poll `entries` (e.g. `lambda: store_entries(store)`) until `request` is done or
    refused, at most `timeout` seconds; then its outcome as it stands (accepted or pending).
    A poll that raises StoreUnavailable counts as "nothing new"."""
    deadline = time.monotonic() + timeout
    outcome = Outcome(request, "pending")
    while True:
        with contextlib.suppress(StoreUnavailable):
            outcome = classify(request, entries())
        if outcome.status in ("done", "refused") or time.monotonic() >= deadline:
            return outcome
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
