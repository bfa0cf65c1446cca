"""The host's own journal: every event appended as one JSON line to a local file, and echoed
as a log line (plain or JSON) on standard error.

This is the host's view that survives a lost store (the incident tooling merges the hosts'
files). A journal that can not write keeps going: the event is still logged, and the failure is
counted, because losing a log line must never stop a decision cycle.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from ringfence.core.event_text import render
from ringfence.core.events import Fact, fact_fields
from ringfence.core.ports import Journal

JOURNAL_VERSION = 2


def journal_file(state_dir: str | Path, host: str) -> Path:
    """Where `host`'s agent writes its journal in its state directory: the one spelling of
    ``journal-HOST.jsonl`` (`ringfence.journal.events.journal_files` finds these again)."""
    return Path(state_dir) / f"journal-{host}.jsonl"


class FileJournal:
    def __init__(self, path: Path, host: str, *, echo: TextIO | None = sys.stderr,
                 echo_json: bool = False) -> None:
        self.mirror: Any = None  # a `journal.store_mirror.StoreMirror`, once the store is open
        self.cluster: str | None = None
        self.path = path
        self.host = host
        self.echo = echo
        self.echo_json = echo_json
        self.write_errors = 0
        self.seq = 0
        # The agent's threads take turns (agent.gate), but the alert worker journals from its
        # own thread: one event at a time keeps `seq` unique and lines whole.
        self._lock = threading.Lock()
        # Journals say which VMs run where and why: for the owner (root) only.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            info = path.stat()
            if info.st_uid == os.getuid() and info.st_mode & 0o077:
                path.chmod(0o600)  # a journal written by an older version

    def record(self, kind: str, **fields: Any) -> None:
        fact = Fact(kind, self.host, **fields)
        with self._lock:
            self._write(kind, fact)

    def _write(self, kind: str, fact: Fact) -> None:
        text = render(fact)
        self.seq += 1
        # Version 2 lines: the fact's fields at the top level beside the rendered text. A
        # version 1 line (no "v") has only t, mono, seq, by, kind, host, vm, text, token and
        # duration: it still loads (journal.events).
        entry: dict[str, Any] = {
            "v": JOURNAL_VERSION,
            "t": round(time.time(), 3),  # wall clock: for people and reports only
            "mono": round(time.monotonic(), 3),
            "seq": self.seq, "by": self.host, "kind": kind, "host": fact.host, "vm": fact.vm,
            "text": text,
        }
        for name, value in fact_fields(fact).items():
            if name not in ("host", "vm"):
                entry[name] = round(value, 3) if isinstance(value, float) else value
        if self.cluster:
            entry["cluster"] = self.cluster
        line = json.dumps(entry, ensure_ascii=False)
        if self.mirror is not None:
            self.mirror.put(entry)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            self.write_errors += 1
        if self.echo is not None:
            if self.echo_json:
                self.echo.write(line + "\n")
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(entry["t"]))
                about = "/".join(x for x in (fact.host, fact.vm) if x)
                self.echo.write(f"{stamp} {self.host} {kind:<20} {about:<16} {text}\n")
            self.echo.flush()


class JournalAlerts:
    """Alerts as journal events (`alert_sent`). Routes to Alertmanager, webhooks, e-mail and
    the dead-man's switch are the alerting module's job; this sink never raises."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def send(self, severity: str, text: str, *, host: str | None = None,
             vm: str | None = None) -> None:
        self.journal.record("alert_sent", host=host, vm=vm, severity=severity, detail=text)


def read_journal(path: Path, tail: int | None = None) -> list[dict[str, Any]]:
    """Every well-formed line of a journal file (a torn last line is skipped); with `tail`,
    only those in its last `tail` bytes (the line cut there never parses, and is skipped)."""
    entries: list[dict[str, Any]] = []
    try:
        with path.open("rb") as journal:
            if tail is not None:
                journal.seek(max(0, journal.seek(0, 2) - tail))
            lines = journal.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return entries
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
