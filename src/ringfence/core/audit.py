"""The audit trail of operator requests: who asked for what, and the request's id.

Every operator action (the CLI, the simulator's scripted operator, the API) is a request written
to the store. In the same transaction as the request itself, the requester writes an *audit
note* under `requests/audit/<id>`: the event kind it stands for (`maintenance_on`,
`maintenance_off`, `vm_stop_requested`, `vm_start_requested`, `operator_request`; and
`force_start_refused` / `vm_migrate_refused` for a request refused at once because another
operator's request for that VM is still pending: written alone, since nothing else is), the
operator's name, the request id, the subject (host or VM) and, in words, what was asked. The
request value carries the same id, and everything done for it (the `vm_stopped`, the
`vm_migrating`, the refusal) journals that id and the operator: the journal links a request to
its outcome, and `ringfence journal export --operator NAME` finds both.

The leader journals each note (in its own journal, so the request is in the hosts' files like
every other event) and then deletes it by compare-and-set. Delivery is at least once: a leader
that dies, or whose delete's answer is lost, between the two leaves the note for the next leader,
which journals it again (same request id: a reader can tell the copy). Notes are never acted on:
the request keys are what the cluster obeys; a note lost with a wiped store loses only words.

Why written by the requester rather than journaled by it: the CLI runs anywhere (no host
journal of its own), and a note in the same transaction as the request can not be missing for a
request that was applied, nor present for one that was not.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ringfence.store.base import KeyValue, Put

__all__ = ["AUDIT_KINDS", "AUDIT_PREFIX", "AuditNote", "audit_put", "new_request_id",
           "read_note"]

AUDIT_PREFIX = "requests/audit/"
AUDIT_KINDS = frozenset({"maintenance_on", "maintenance_off", "vm_stop_requested",
                         "vm_start_requested", "operator_request",
                         # refused at once, because another request for the VM is pending
                         "force_start_refused", "vm_migrate_refused"})
_NOTE_FIELDS = ("host", "vm", "target", "reason")


def new_request_id() -> str:
    """A short random id, unique enough for one cluster's operator requests."""
    return "r-" + secrets.token_hex(6)


def audit_put(kind: str, operator: str, request: str, **fields: str | None) -> Put:
    """The audit note to write in the same transaction as request `request`."""
    if kind not in AUDIT_KINDS:
        raise ValueError(f"not an audit kind: {kind}")
    value: dict[str, Any] = {"kind": kind, "operator": operator, "request": request}
    value.update({k: v for k, v in fields.items() if k in _NOTE_FIELDS and v is not None})
    return Put(AUDIT_PREFIX + request, value)


@dataclass(frozen=True)
class AuditNote:
    """One note, typed (see the module docstring)."""

    key: str
    revision: int
    kind: str
    operator: str
    request: str
    fields: Mapping[str, str]


def read_note(kv: KeyValue) -> AuditNote | None:
    """A note from its key, or None for a value that is not one (hand-written, newer)."""
    value = kv.value
    kind, operator, request = value.get("kind"), value.get("operator"), value.get("request")
    if kind not in AUDIT_KINDS or not isinstance(operator, str) or not isinstance(request, str):
        return None
    fields = {k: str(value[k]) for k in _NOTE_FIELDS if isinstance(value.get(k), str)}
    return AuditNote(kv.key, kv.mod_revision, str(kind), operator, request, fields)
