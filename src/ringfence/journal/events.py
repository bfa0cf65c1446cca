"""The journal's events in one normalised shape, from the simulator or from real hosts' files.

Decided here:

- An :class:`Event` is one journaled fact: time ``t`` (simulated seconds from the start of a
  run, or wall-clock seconds since the epoch for real journals), its typed fields ``fact``
  (:class:`ringfence.core.events.Fact`: kind, writer ``by``, the ``host`` and ``vm`` it is
  *about*, and the rest), the ``text`` rendered from them for people (never read back) and
  ``seq`` (its position in its source: the journal line's own sequence number, or the index in
  the simulator's journal). Version 1 journal lines (free text, no ``"v"``) still load: their
  fields are what they carried (host, vm, token, duration), their text is kept as written.
- Real journals are merged by ``(t, by, seq)``: wall clocks of different hosts are compared,
  which is good enough for people reading a report (NTP keeps them within milliseconds) and is
  never used for a safety decision.
- The same fact reported by several observers is kept once: a ``heartbeat_lost`` (or
  ``heartbeat_restored``, ``host_suspect``, ``host_alive``, ``lease_expired``) about the same
  host within :data:`DUPLICATE_WINDOW` seconds of the first report, or any event with identical
  fields (all but the writer) from another writer within that window. The first report is kept and
  the others are listed in its ``also`` field as ``(by, t)`` pairs, so nothing is lost.
- The simulator's journal records its writer as the real one does (each host's journal
  sets ``by``; events of the simulated world itself have none).

Failure semantics: a missing file or directory, a file that holds no journal line at all, and
a line that is JSON but lacks a required field or has a field of the wrong type raise
:class:`ringfence.errors.ConfigError` naming the file, the line and the field. A line that is
not JSON (a line torn by a crash, possibly glued to the next one) is skipped and counted in
:attr:`JournalSource.skipped`: a host that died mid-write must not make its journal unreadable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringfence.core.event_text import render
from ringfence.core.events import Fact, OfFact, fact_fields, fact_from_fields
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
    "peer_of",
]

DUPLICATE_WINDOW = 1.0
"""Seconds within which the same fact from several observers counts as one event."""

# Kinds whose reports by different observers describe one fact about `host`.
_SAME_FACT_KINDS = frozenset({
    "heartbeat_lost", "heartbeat_restored", "host_suspect", "host_alive", "lease_expired",
})

@dataclass(frozen=True)
class Event(OfFact):
    """One journaled fact (see the module docstring): its time, its typed fields (`fact`:
    kind, writer, subject and the rest, `core.events.Fact`), its rendered text (for people
    only: nothing here reads it), its place in its source and the folded duplicates."""

    t: float
    fact: Fact
    text: str = ""
    seq: int = 0
    also: tuple[tuple[str | None, float], ...] = ()

    @classmethod
    def of(cls, t: float, kind: str, host: str | None = None, vm: str | None = None,
           text: str | None = None, by: str | None = None, seq: int = 0,
           **fields: Any) -> Event:
        """An event from its parts (tests, tools); the text is rendered when not given."""
        fact = Fact(kind, by, host=host, vm=vm, **fields)
        return cls(t, fact, render(fact) if text is None else text, seq)

    @property
    def observers(self) -> tuple[str, ...]:
        """Every writer of this fact (the first report's and the folded duplicates'), sorted."""
        names = {name for name in (self.by, *(b for b, _ in self.also)) if name}
        return tuple(sorted(names))

    @property
    def last_t(self) -> float:
        """The time of the latest report of this fact."""
        return max([self.t, *(t for _, t in self.also)])


def peer_of(event: Event) -> str | None:
    """The peer a ``jeopardy`` event is about (its ``host`` is the observer)."""
    return event.fact.peer if event.kind == "jeopardy" else None


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
            if event.kind in _SAME_FACT_KINDS or _same_fact(event.fact, first.fact):
                kept[index] = Event(first.t, first.fact, first.text, first.seq,
                                    (*first.also, (event.by, event.t)))
                folded = True
                break
        if not folded:
            recent.setdefault(key, []).append(len(kept))
            kept.append(event)
    return kept


def _same_fact(a: Fact, b: Fact) -> bool:
    """The same fact from two writers: every field equal but the writer."""
    return replace(a, by=None) == replace(b, by=None)


def from_world(world: World) -> list[Event]:
    """The simulator's journal as events (sorted, duplicates folded). Ground truth (which VM
    ran where and when) stays in ``world.runs``: reports are built from events only."""
    events = [Event(entry.t, entry.fact, entry.text, index)
              for index, entry in enumerate(world.entries)]
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
    # Version 2 lines carry the fact's fields; version 1 lines (no "v") only host, vm, token
    # and duration beside their text: they load with the other fields unset.
    fact = fact_from_fields(str(entry["kind"]), entry.get("by"), dict(entry))
    return Event(float(entry["t"]), fact, str(entry.get("text") or ""),
                 int(entry.get("seq") or 0))


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
    document.update({k: v for k, v in fact_fields(event.fact).items()
                     if k not in ("host", "vm")})
    if event.also:
        document["also"] = [{"by": by, "t": round(t, 3)} for by, t in event.also]
    return document
