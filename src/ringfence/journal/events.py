"""The journal's events in one normalised shape, from the simulator or from real hosts' files.

Decided here:

- An :class:`Event` is one journaled fact: time ``t`` (simulated seconds from the start of a
  run, or wall-clock seconds since the epoch for real journals), ``kind`` (one of
  :data:`ringfence.core.events.EVENT_KINDS`), the ``host`` and ``vm`` the event is *about*, the
  ``text``, the host that wrote it (``by``, ``None`` where unknown) and ``seq`` (its position in
  its source: the journal line's own sequence number, or the index in the simulator's journal).
- Real journals are merged by ``(t, by, seq)``: wall clocks of different hosts are compared,
  which is good enough for people reading a report (NTP keeps them within milliseconds) and is
  never used for a safety decision.
- The same fact reported by several observers is kept once: a ``heartbeat_lost`` (or
  ``heartbeat_restored``, ``host_suspect``, ``host_alive``, ``lease_expired``) about the same
  host within :data:`DUPLICATE_WINDOW` seconds of the first report, or any event with identical
  kind, host, VM and text from another writer within that window. The first report is kept and
  the others are listed in its ``also`` field as ``(by, t)`` pairs, so nothing is lost.
- The simulator's journal does not record who wrote an entry; :func:`from_world` infers ``by``
  where the event can only have come from one host (a host's own probes, its hypervisor, its
  lease renewals) or where the text names the observer (``"atl1 hears nothing from atl2"``).

Failure semantics: a missing file or directory, a file that holds no journal line at all, and
a line that is JSON but lacks a required field or has a field of the wrong type raise
:class:`ringfence.errors.ConfigError` naming the file, the line and the field. A line that is
not JSON (a line torn by a crash, possibly glued to the next one) is skipped and counted in
:attr:`JournalSource.skipped`: a host that died mid-write must not make its journal unreadable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringfence.errors import ConfigError, describe_value

if TYPE_CHECKING:
    from ringfence.sim.world import World

__all__ = [
    "DUPLICATE_WINDOW",
    "Event",
    "JournalSource",
    "event_to_dict",
    "from_entries",
    "from_journal_files",
    "from_world",
    "journal_files",
    "merge_duplicates",
    "observer_of",
    "peer_of",
]

DUPLICATE_WINDOW = 1.0
"""Seconds within which the same fact from several observers counts as one event."""

# Kinds whose reports by different observers describe one fact about `host`.
_SAME_FACT_KINDS = frozenset({
    "heartbeat_lost", "heartbeat_restored", "host_suspect", "host_alive", "lease_expired",
})

# Kinds that only the host the event is about can journal (its probes, its hypervisor, its
# own lease renewals and its own decisions).
_SELF_REPORTED = frozenset({
    "link_down", "link_up", "link_flapping", "host_degraded", "host_ineligible",
    "host_healthy", "memory_errors", "nic_renamed", "storage_unwritable", "storage_writable",
    "quorum_lost", "quorum_gained", "waiting_for_quorum", "self_fence", "failsafe_entered",
    "failsafe_left", "host_shutdown", "rejoin_blocked", "rejoin_allowed", "watchdog_missing",
    "vm_started", "vm_restarted", "vm_stopped", "vm_crashed", "vm_verified",
    "vm_verify_failed", "vm_start_failed", "vm_stop_failed", "hypervisor_error",
    "manager_elected", "jeopardy", "force_start_pending", "preexisting_split_brain",
})

_OBSERVER = re.compile(r"^(\S+) hears ")
_JEOPARDY_PEER = re.compile(r"^\S+ hears (\S+) only on ")


@dataclass(frozen=True)
class Event:
    """One journaled fact (see the module docstring for the meaning of each field)."""

    t: float
    kind: str
    host: str | None
    vm: str | None
    text: str
    by: str | None = None
    seq: int = 0
    also: tuple[tuple[str | None, float], ...] = ()
    token: int | None = None  # the VM's lease (fencing) token, where the event has one
    duration: float | None = None  # seconds, where the event measures one (execution_gap)

    @property
    def observers(self) -> tuple[str, ...]:
        """Every writer of this fact (the first report's and the folded duplicates'), sorted."""
        names = {name for name in (self.by, *(b for b, _ in self.also)) if name}
        return tuple(sorted(names))

    @property
    def last_t(self) -> float:
        """The time of the latest report of this fact."""
        return max([self.t, *(t for _, t in self.also)])


def observer_of(kind: str, text: str) -> str | None:
    """The observer a heartbeat event's text names (``"atl1 hears nothing from atl2"``)."""
    if kind in ("heartbeat_lost", "heartbeat_restored", "jeopardy"):
        match = _OBSERVER.match(text)
        if match:
            return match.group(1)
    return None


def peer_of(event: Event) -> str | None:
    """The peer a ``jeopardy`` event is about (its ``host`` is the observer)."""
    if event.kind == "jeopardy":
        match = _JEOPARDY_PEER.match(event.text)
        if match:
            return match.group(1)
    return None


def _infer_by(kind: str, host: str | None, text: str) -> str | None:
    """Who wrote a simulator entry, where only one host can have (see the module docstring)."""
    observer = observer_of(kind, text)
    if observer is not None:
        return observer
    if host is None:
        return None
    if kind in _SELF_REPORTED:
        return host
    if kind == "lease_expired" and "own lease" in text:
        return host
    if kind == "vm_released" and (" handed back by " in text or " is stopped on " in text):
        return host
    return None


def _sort_key(event: Event) -> tuple[float, str, int]:
    return (event.t, event.by or "", event.seq)


def merge_duplicates(events: Iterable[Event], window: float = DUPLICATE_WINDOW) -> list[Event]:
    """Fold reports of one fact by several observers into the first report (module docstring).

    `events` must be sorted by time; the result keeps that order."""
    kept: list[Event] = []
    # (kind, host, vm) -> indexes into `kept` of recent first reports, for the window check
    recent: dict[tuple[str, str | None, str | None], list[int]] = {}
    for event in events:
        key = (event.kind, event.host, event.vm)
        folded = False
        for index in reversed(recent.get(key, [])):
            first = kept[index]
            if event.t - first.t > window:
                break
            if event.by is not None and event.by in first.observers:
                continue  # the same observer saying it again is a new report, not a copy
            if event.kind in _SAME_FACT_KINDS or event.text == first.text:
                kept[index] = Event(first.t, first.kind, first.host, first.vm, first.text,
                                    first.by, first.seq, (*first.also, (event.by, event.t)))
                folded = True
                break
        if not folded:
            recent.setdefault(key, []).append(len(kept))
            kept.append(event)
    return kept


def from_world(world: World) -> list[Event]:
    """The simulator's journal as events (sorted, duplicates folded). Ground truth (which VM
    ran where and when) stays in ``world.runs``: reports are built from events only."""
    events = [
        Event(entry.t, entry.kind, entry.host, entry.vm, entry.text,
              _infer_by(entry.kind, entry.host, entry.text), index, duration=entry.duration)
        for index, entry in enumerate(world.entries)
    ]
    events.sort(key=lambda e: (e.t, e.seq))
    return merge_duplicates(events)


# ---------------------------------------------------------------------- real journals
@dataclass
class JournalSource:
    """Events read from hosts' journal files, and what reading them found."""

    events: list[Event]
    files: list[Path] = field(default_factory=list)
    skipped: int = 0  # lines that were not JSON (torn by a crash)


_REQUIRED: dict[str, tuple[type, ...]] = {"t": (int, float), "kind": (str,)}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "seq": (int,), "by": (str,), "host": (str,), "vm": (str,), "text": (str,),
    "duration": (int, float),
}


def _entry_event(entry: Mapping[str, Any], *, file: str | None, line: int | None) -> Event:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"expected a JSON object (a journal entry), got "
                          f"{describe_value(entry)}", file=file, line=line)
    for name in _REQUIRED:
        if name not in entry:
            raise ConfigError("missing field: a journal entry needs t (seconds since the "
                              "epoch) and kind", file=file, line=line, path=name)
    for name, types in (*_REQUIRED.items(), *_OPTIONAL.items()):
        value = entry.get(name)
        if value is None and name in _OPTIONAL:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            expected = "a number" if float in types else (
                "a whole number" if int in types else "a string")
            raise ConfigError(f"expected {expected}, got {describe_value(value)}",
                              file=file, line=line, path=name)
    return Event(
        t=float(entry["t"]), kind=str(entry["kind"]), host=entry.get("host"),
        vm=entry.get("vm"), text=str(entry.get("text") or ""), by=entry.get("by"),
        seq=int(entry.get("seq") or 0),
        token=int(entry["token"]) if isinstance(entry.get("token"), int) else None,
        duration=float(entry["duration"]) if entry.get("duration") is not None else None)


def from_entries(entries: Iterable[Mapping[str, Any]], *, source: str | None = None
                 ) -> list[Event]:
    """Journal entries already parsed (``{"t", "seq", "by", "kind", "host", "vm", "text"}``,
    the lines :class:`ringfence.agent.journal.FileJournal` writes) as sorted, de-duplicated
    events. A malformed entry raises :class:`ConfigError` naming `source` and the field."""
    events = [_entry_event(entry, file=source, line=None) for entry in entries]
    events.sort(key=_sort_key)
    return merge_duplicates(events)


def journal_files(paths: Sequence[str | Path]) -> list[Path]:
    """The journal files that `paths` name: files as given, directories by their
    ``journal-*.jsonl`` files (sorted). Raises :class:`ConfigError` for a path that does not
    exist and for a directory without journal files."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(path.glob("journal-*.jsonl"))
            if not inside:
                raise ConfigError("no journal files (journal-HOST.jsonl) in this directory",
                                  file=str(path))
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError("no such file or directory", file=str(path))
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def from_journal_files(paths: Sequence[str | Path]) -> JournalSource:
    """Merge hosts' JSONL journals (files, or directories holding ``journal-*.jsonl``) into one
    sorted, de-duplicated event stream (see the module docstring for what is skipped and what
    raises)."""
    files = journal_files(paths)
    events: list[Event] = []
    skipped = 0
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"can not read this journal: {exc}", file=str(path)) from None
        good = 0
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            events.append(_entry_event(entry, file=str(path), line=number))
            good += 1
        if lines and not good:
            raise ConfigError("not a ringfence journal: no line is a JSON journal entry",
                              file=str(path))
    events.sort(key=_sort_key)
    return JournalSource(merge_duplicates(events), files, skipped)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The JSON form of an event (the journal line's fields, plus ``also`` when folded)."""
    document: dict[str, Any] = {
        "t": round(event.t, 3), "seq": event.seq, "by": event.by, "kind": event.kind,
        "host": event.host, "vm": event.vm, "text": event.text,
    }
    if event.also:
        document["also"] = [{"by": by, "t": round(t, 3)} for by, t in event.also]
    if event.token is not None:
        document["token"] = event.token
    return document
