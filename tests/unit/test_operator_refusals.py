"""An operator's request refused at once, because another operator's request for the same VM is
still pending (two operators forcing one VM at the same moment, seed 004), is audited like the
request would have been: a note in the store that the leader journals, with the operator's name
and the first operator's in the reason. Found in the lab (004-force-start-with-quorum, 2
December): bob's refused forced start printed its refusal and left no trace in the journal."""

from __future__ import annotations

from pathlib import Path

from ringfence.config import ClusterConfig
from ringfence.core.audit import AUDIT_PREFIX, read_note
from ringfence.operator import submit_force, submit_migrate
from ringfence.store.sqlite import SqliteStore

CONFIG = ClusterConfig.model_validate({
    "networks": [{"name": "ring0", "role": "heartbeat"}],
    "hosts": [{"name": h, "cpus": 8, "memory": "16GiB"} for h in ("host1", "host2", "host3")],
    "vms": [{"name": "app", "cpus": 1, "memory": "1GiB"}],
})


def notes(store: SqliteStore) -> list[tuple[str, str, dict[str, str]]]:
    found = [read_note(kv) for kv in store.get_prefix(AUDIT_PREFIX).items]
    return [(n.kind, n.operator, dict(n.fields)) for n in found if n is not None]


def test_a_second_forced_start_while_the_first_is_pending_is_refused_and_audited(
        tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    first = submit_force(CONFIG, store, "app", "host2", [], "alice")
    assert first.request is not None and first.refused is None
    second = submit_force(CONFIG, store, "app", "host3", [], "bob")
    assert second.refused is not None and "alice" in second.refused
    refusals = [n for n in notes(store) if n[0] == "force_start_refused"]
    assert refusals == [("force_start_refused", "bob",
                         {"vm": "app", "host": "host3", "reason": second.refused})]


def test_a_second_migration_while_the_first_is_pending_is_refused_and_audited(
        tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    assert submit_migrate(CONFIG, store, "app", "host2", "alice").refused is None
    second = submit_migrate(CONFIG, store, "app", "host3", "bob")
    assert second.refused is not None
    refusals = [n for n in notes(store) if n[0] == "vm_migrate_refused"]
    assert refusals == [("vm_migrate_refused", "bob",
                         {"vm": "app", "target": "host3", "reason": second.refused})]
