"""The alert worker with a real SQLite store and a real webhook receiver on loopback:
delivery by the leader through the outbox, a new leader finishing what an old one left, direct
delivery without a store, rate limits, retries, and the dead-man's pings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ringfence.alerts.models import Alert
from ringfence.alerts.worker import OUTBOX, AlertWorker, RoutedAlerts, outbox_key
from ringfence.store.base import Put
from ringfence.store.sqlite import SqliteStore


class ListJournal:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [f for k, f in self.events if k == kind]


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def hook(receiver: Any, tmp_path: Path, **extra: Any) -> Alert:
    secret = tmp_path / "hook.secret"
    secret.write_bytes(b"s3cret\n")
    return Alert.model_validate({"kind": "webhook", "url": receiver.url, "name": "pager",
                                 "secret_file": str(secret), **extra})


def worker(routes: list[Alert], journal: ListJournal, host: str = "hv1") -> AlertWorker:
    return AlertWorker(routes, cluster="c", host=host, journal=journal)


def test_leader_delivers_from_the_outbox_and_clears_it(webhook_receiver: Any,
                                                        tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    journal = ListJournal()
    w = worker([hook(webhook_receiver, tmp_path)], journal)
    w.start(store, lambda: True)
    RoutedAlerts(journal, w).send("critical", "hv2 fenced by power off", host="hv2")
    wait_for(lambda: webhook_receiver.alerts)
    body = next(iter(webhook_receiver.alerts.values()))
    assert body["host"] == "hv2" and body["severity"] == "critical"
    assert webhook_receiver.bad_signatures == 0
    wait_for(lambda: journal.kinds("alert_delivered"))
    delivered = journal.kinds("alert_delivered")[0]
    assert delivered["target"] == "pager" and delivered["method"] == "webhook"
    assert delivered["count"] == 1
    wait_for(lambda: not store.get_prefix(OUTBOX).items)
    w.close()
    assert journal.events[0][0] == "alert_sent"


def test_a_new_leader_delivers_what_the_old_one_left(webhook_receiver: Any,
                                                     tmp_path: Path) -> None:
    """An alert in the outbox, its route not marked done (the leader died after sending or
    before): the next leader sends it, with the same id; the receiver sees it once."""
    store = SqliteStore(str(tmp_path / "s.db"))
    route = hook(webhook_receiver, tmp_path)
    alert = {"id": "a1", "severity": "critical", "text": "hv1 fenced", "host": "hv1",
             "vm": None, "cluster": "c", "raised_by": "hv3", "t": time.time()}
    store.txn([], [Put(outbox_key("a1"), {"alert": alert, "done": []})])
    old = worker([route], ListJournal(), host="hv1")
    old.start(store, lambda: True)
    wait_for(lambda: "a1" in webhook_receiver.alerts)
    old.close()
    # The old leader's mark is lost: put the record back as it was.
    store.txn([], [Put(outbox_key("a1"), {"alert": alert, "done": []})])
    journal = ListJournal()
    new = worker([route], journal, host="hv2")
    new.start(store, lambda: True)
    wait_for(lambda: not store.get_prefix(OUTBOX).items)
    new.close()
    assert list(webhook_receiver.alerts) == ["a1"] and webhook_receiver.duplicates == 1
    assert journal.kinds("alert_delivered")[0]["detail"] == "hv1 fenced"


def test_a_follower_only_writes_the_outbox(webhook_receiver: Any, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    w = worker([hook(webhook_receiver, tmp_path)], ListJournal())
    w.start(store, lambda: False)
    w.raise_alert("warning", "link lost", host="hv1")
    wait_for(lambda: store.get_prefix(OUTBOX).items)
    time.sleep(0.3)
    w.close()
    assert webhook_receiver.posts == 0


def test_without_a_store_a_host_delivers_its_own(webhook_receiver: Any, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "absent" / "s.db"), create=False)
    journal = ListJournal()
    w = worker([hook(webhook_receiver, tmp_path)], journal)
    w.start(store, lambda: False)
    w.raise_alert("critical", "hv1 fenced itself", host="hv1")
    wait_for(lambda: journal.kinds("alert_delivered"))
    w.close()
    assert len(webhook_receiver.alerts) == 1


def test_severity_filter_rate_limit_and_retries(webhook_receiver: Any, tmp_path: Path) -> None:
    journal = ListJournal()
    route = hook(webhook_receiver, tmp_path, min_severity="warning",
                 rate_limit={"count": 2, "per": "1h"}, retries=2)
    webhook_receiver.fail = 1
    w = worker([route], journal)
    w.start(None, lambda: False)
    w.raise_alert("info", "quiet")
    for n in range(3):
        w.raise_alert("critical", f"loud {n}")
    wait_for(lambda: len(journal.kinds("alert_delivered")) == 2
             and len(journal.kinds("alert_failed")) == 1, timeout=20)
    w.close()
    texts = sorted(b["text"] for b in webhook_receiver.alerts.values())
    assert texts == ["loud 0", "loud 1"]
    assert "rate limit" in journal.kinds("alert_failed")[0]["reason"]
    assert max(d["count"] for d in journal.kinds("alert_delivered")) == 2  # one 503, a retry


def test_failed_route_is_journaled_with_the_reason(tmp_path: Path) -> None:
    journal = ListJournal()
    route = Alert.model_validate({"kind": "webhook", "url": "http://127.0.0.1:9/x",
                                  "retries": 0, "timeout": "1s"})
    w = worker([route], journal)
    w.start(None, lambda: False)
    w.raise_alert("critical", "nobody listens")
    wait_for(lambda: journal.kinds("alert_failed"))
    w.close()
    failed = journal.kinds("alert_failed")[0]
    assert failed["count"] == 1 and "ConnectError" in failed["reason"]


def test_deadman_pings_from_the_leader_and_when_no_leader(webhook_receiver: Any,
                                                           tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    route = Alert.model_validate({"kind": "deadman", "url": webhook_receiver.url,
                                  "every": "1s"})
    w = worker([route], ListJournal())
    w.start(store, lambda: False)  # no leader key in the store: this host pings
    wait_for(lambda: len(webhook_receiver.pings) >= 2, timeout=10)
    w.close()
    store.txn([], [Put("manager", {"host": "hv2"})])
    quiet = worker([route], ListJournal(), host="hv3")
    quiet.start(store, lambda: False)  # another host leads: not this one's job
    before = len(webhook_receiver.pings)
    time.sleep(1.5)
    quiet.close()
    assert len(webhook_receiver.pings) == before


def test_an_idle_follower_waits_instead_of_spinning(tmp_path: Path) -> None:
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        return time.monotonic()

    store = SqliteStore(str(tmp_path / "s.db"))
    w = AlertWorker([Alert.model_validate({"kind": "log"})], cluster="c", host="hv1",
                    journal=ListJournal(), clock=clock)
    w.start(store, lambda: False)
    time.sleep(1.0)
    w.close()
    assert calls < 100  # a few per SCAN interval, not a busy loop
