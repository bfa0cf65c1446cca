"""Resolving alerts when their incident resolves: the verdicts from a journal, and the worker
with a real SQLite store and a real webhook receiver (the leader resolves, the next leader
takes over, a resolution never overtakes its alert)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from test_alert_worker import ListJournal, hook, wait_for, worker

from ringfence.alerts.resolution import EXPIRE, FIRING, firing_key, settle
from ringfence.alerts.routes import AlertMessage
from ringfence.alerts.worker import OUTBOX, RoutedAlerts, outbox_key
from ringfence.journal.store_mirror import journal_key
from ringfence.store.base import Put, Store
from ringfence.store.sqlite import SqliteStore

T0 = 1_790_000_000.0


def entry(t: float, seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": 2, "t": t, "seq": seq, "by": "hv1", "kind": kind,
            "host": fields.pop("host", None), "vm": fields.pop("vm", None), "text": kind,
            **fields}


def crash(alert_id: str, t: float = T0) -> list[dict[str, Any]]:
    """erp runs on hv2, dies there; an alert says so."""
    return [entry(t, 1, "vm_started", host="hv2", vm="erp"),
            entry(t + 5, 2, "vm_crashed", host="hv2", vm="erp"),
            entry(t + 5.1, 3, "alert_sent", host="hv2", vm="erp", severity="critical",
                  detail="erp died", alert=alert_id)]


def message(alert_id: str = "a1", t: float = T0 + 5.1) -> AlertMessage:
    return AlertMessage(alert_id, "critical", "erp died", "hv2", "erp", "c", "hv1", t)


def test_an_alert_resolves_when_its_vm_runs_elsewhere() -> None:
    entries = crash("a1")
    assert settle([message()], entries, T0 + 20) == []  # still down
    entries.append(entry(T0 + 8, 4, "vm_started", host="hv3", vm="erp"))
    [verdict] = settle([message()], entries, T0 + 20)
    assert verdict.resolve and verdict.alert.id == "a1"
    assert "INC-0001" in verdict.why and "unverified" in verdict.why


def test_a_vm_with_a_check_resolves_when_it_answers_or_the_wait_is_over() -> None:
    entries = [*crash("a1"), entry(T0 + 8, 4, "vm_started", host="hv3", vm="erp")]
    assert settle([message()], entries, T0 + 20, checked_vms=["erp"]) == []
    late = settle([message()], entries, T0 + 8 + 61, checked_vms=["erp"])
    assert [v.resolve for v in late] == [True]
    entries.append(entry(T0 + 12, 5, "vm_verified", host="hv3", vm="erp"))
    [verdict] = settle([message()], entries, T0 + 20, checked_vms=["erp"])
    assert verdict.resolve and "verified" in verdict.why


def test_an_alert_of_no_incident_expires_without_a_notice() -> None:
    lonely = [entry(T0, 1, "alert_sent", host="hv1", severity="warning", detail="x",
                    alert="b1")]
    b1 = AlertMessage("b1", "warning", "x", "hv1", None, "c", "hv1", T0)
    assert settle([b1], lonely, T0 + 60) == []
    [verdict] = settle([b1], lonely, T0 + EXPIRE)
    assert not verdict.resolve and verdict.why == "expired"


def test_a_bad_journal_entry_is_left_out() -> None:
    entries = [*crash("a1"), {"kind": "vm_started"},
               entry(T0 + 8, 4, "vm_started", host="hv3", vm="erp")]
    assert [v.resolve for v in settle([message()], entries, T0 + 20)] == [True]


def put_journal(store: Store, entries: list[dict[str, Any]]) -> None:
    store.txn([], [Put(journal_key("hv1", 1, e["seq"]), e) for e in entries])


def test_the_leader_resolves_through_the_outbox(webhook_receiver: Any, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    journal = ListJournal()
    w = worker([hook(webhook_receiver, tmp_path)], journal)
    w.start(store, lambda: True)
    now = time.time()
    RoutedAlerts(journal, w).send("critical", "erp died", host="hv2", vm="erp")
    alert_id = journal.kinds("alert_sent")[0]["alert"]
    assert alert_id
    put_journal(store, crash(alert_id, now - 5))
    wait_for(lambda: alert_id in webhook_receiver.alerts)
    assert store.get(firing_key(alert_id)) is not None
    time.sleep(2.5)  # a resolve scan: the VM is still down
    assert f"{alert_id}:resolved" not in webhook_receiver.alerts
    put_journal(store, [entry(now, 4, "vm_started", host="hv3", vm="erp")])
    wait_for(lambda: f"{alert_id}:resolved" in webhook_receiver.alerts)
    wait_for(lambda: not store.get_prefix(OUTBOX).items)
    w.close()
    body = webhook_receiver.alerts[f"{alert_id}:resolved"]
    assert body["id"] == alert_id and body["status"] == "resolved"
    assert body["severity"] == "critical" and body["host"] == "hv2" and body["ends_time"]
    assert webhook_receiver.alerts[alert_id]["status"] == "firing"
    assert not store.get_prefix(FIRING).items
    [resolved] = journal.kinds("alert_resolved")
    assert resolved["alert"] == alert_id and "INC-0001" in resolved["reason"]
    assert webhook_receiver.bad_signatures == 0 and webhook_receiver.duplicates == 0


def test_the_next_leader_resolves_what_the_old_one_left_firing(webhook_receiver: Any,
                                                               tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    route = hook(webhook_receiver, tmp_path)
    old_journal = ListJournal()
    old = worker([route], old_journal, host="hv1")
    leading = True
    old.start(store, lambda: leading)
    now = time.time()
    RoutedAlerts(old_journal, old).send("critical", "erp died", host="hv2", vm="erp")
    alert_id = old_journal.kinds("alert_sent")[0]["alert"]
    put_journal(store, crash(alert_id, now - 5))
    wait_for(lambda: not store.get_prefix(OUTBOX).items)
    leading = False  # the old leader is gone; the alert is still firing
    old.close()
    put_journal(store, [entry(now, 4, "vm_started", host="hv3", vm="erp")])
    journal = ListJournal()
    new = worker([route], journal, host="hv3")
    new.start(store, lambda: True)
    wait_for(lambda: f"{alert_id}:resolved" in webhook_receiver.alerts)
    wait_for(lambda: not store.get_prefix(OUTBOX).items)
    new.close()
    assert sorted(webhook_receiver.alerts) == [alert_id, f"{alert_id}:resolved"]
    assert webhook_receiver.duplicates == 0
    assert journal.kinds("alert_resolved")[0]["alert"] == alert_id


def test_a_resolution_waits_for_its_alert_on_each_route(webhook_receiver: Any,
                                                        tmp_path: Path) -> None:
    """A leader died with both in the outbox: the next one delivers the alert first."""
    store = SqliteStore(str(tmp_path / "s.db"))
    firing = message("c1", time.time())
    resolution = firing.resolution(time.time(), "incident INC-0001 resolved, verified")
    store.txn([], [Put(outbox_key(resolution.key), {"alert": resolution.to_json(), "done": []}),
                   Put(outbox_key(firing.key), {"alert": firing.to_json(), "done": []})])
    webhook_receiver.hold = 1.0  # the alert's delivery takes a while
    w = worker([hook(webhook_receiver, tmp_path)], ListJournal())
    w.start(store, lambda: True)
    wait_for(lambda: not store.get_prefix(OUTBOX).items)
    w.close()
    arrived = webhook_receiver.arrived
    assert arrived["c1"] < arrived["c1:resolved"]
