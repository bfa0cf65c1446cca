"""The journal mirrored into the store: every host's events readable from any machine, kept
within a bound, and the local file written first whatever the store does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import bootstrapped
from ringfence.agent.journal import FileJournal, read_journal
from ringfence.journal import store_mirror
from ringfence.journal.store_mirror import StoreMirror, read_store_journal
from ringfence.store.base import StoreUnavailable
from ringfence.store.sqlite import SqliteStore


def test_events_of_two_hosts_are_exported_from_the_store(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    for host in ("h1", "h2"):
        journal = FileJournal(tmp_path / f"journal-{host}.jsonl", host, echo=None)
        journal.cluster = "t"
        with SqliteStore(str(db)) as store:
            journal.mirror = StoreMirror(store, host, boot=1000)
            journal.record("host_suspect", host="h3", duration=1.5)
            journal.record("vm_started", host=host, vm=f"vm-{host}", token=2)
            journal.mirror.close()
    with SqliteStore(str(db)) as store:
        entries = read_store_journal(store)
    assert [(e["by"], e["kind"]) for e in entries] == [
        ("h1", "host_suspect"), ("h1", "vm_started"), ("h2", "host_suspect"),
        ("h2", "vm_started")]
    assert all(e["cluster"] == "t" for e in entries)
    cluster = {"name": "t", "networks": [{"name": "ring0", "role": "heartbeat"}],
               "hosts": [{"name": h, "cpus": 1, "memory": "1GiB"} for h in ("h1", "h2", "h3")],
               "store": {"kind": "sqlite", "path": str(db)}}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    bootstrapped(db, "t")
    result = subprocess.run([sys.executable, "-m", "ringfence.cli", "journal", "export",
                             "--store", "--config", str(path), "--json"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = [json.loads(line)["kind"] for line in result.stdout.splitlines()]
    assert kinds.count("vm_started") == 2


class _DeadStore:
    def txn(self, *args: object, **kwargs: object) -> object:
        raise StoreUnavailable("no quorum")

    def get_prefix(self, prefix: str) -> object:
        raise StoreUnavailable("no quorum")


def test_a_dead_store_never_blocks_or_loses_the_local_journal(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path / "journal.jsonl", "h1", echo=None)
    journal.mirror = StoreMirror(_DeadStore(), "h1", boot=1)  # type: ignore[arg-type]
    for i in range(20):
        journal.record("heartbeat_lost", host="h2", links=("ring0",), duration=float(i))
    journal.mirror.close(timeout=0.5)
    assert len(read_journal(tmp_path / "journal.jsonl")) == 20


def test_old_events_are_dropped_beyond_the_bound(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mirror, "KEEP", 30)
    with SqliteStore(str(tmp_path / "store.db")) as store:
        journal = FileJournal(tmp_path / "journal.jsonl", "h1", echo=None)
        journal.mirror = StoreMirror(store, "h1", boot=7)
        for i in range(100):
            journal.record("link_flapping", host="h1", nic="eth0", network="ring0", count=i)
        journal.mirror.close()
        entries = read_store_journal(store)
    assert 30 <= len(entries) <= 30 + store_mirror.BATCH
    assert entries[-1]["count"] == 99
