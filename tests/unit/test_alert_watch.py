"""Monitors and route self-tests: which routes carry their alerts, and the worker running them
against real endpoints on loopback (a webhook receiver, a TCP port that opens and closes, a
SQLite store for a VM monitor): down after the failures in a row, alerted through the other
route, journaled, resolved when it answers again."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from test_alert_worker import ListJournal, hook, wait_for

from ringfence.alerts.models import Alert
from ringfence.alerts.watch import Check, checks_of, reach
from ringfence.alerts.worker import OUTBOX, AlertWorker
from ringfence.config import ClusterConfig, load_cluster
from ringfence.core.leases import host_lease_key, vm_owner_key
from ringfence.store.base import Put
from ringfence.store.sqlite import SqliteStore

CLUSTER = """\
networks: [{name: ring0, role: heartbeat}]
hosts: [{name: hv1, cpus: 4, memory: 4GiB}]
vms: [{name: mon-a, cpus: 1, memory: 1GiB, host: hv1}]
alerts:
  - {kind: alertmanager, name: am, url: 'http://mon-a:9093', self_test: {every: 1m}}
  - {kind: webhook, name: pager, url: 'https://pager.example/hook'}
  - {kind: email, name: mail, smtp: 'pager.example:25', to: [a@b.org]}
monitors:
  - {name: alertmanager, http: 'http://mon-a:9093/-/healthy'}
  - {name: mon-vm, vm: mon-a}
  - {name: pinned, tcp: 'x.example:1', routes: [am]}
"""


def config(tmp_path: Path, text: str = CLUSTER) -> ClusterConfig:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_cluster(path)


def test_alerts_go_through_routes_that_do_not_depend_on_the_silent_system(
        tmp_path: Path) -> None:
    checks = {c.name: c for c in checks_of(config(tmp_path))}
    assert checks["alertmanager"].fallback == ("pager", "mail")  # not through mon-a
    assert checks["mon-vm"].fallback == ("pager", "mail")
    assert checks["pinned"].fallback == ("am",)
    # A failed route is alerted through another route on another host.
    assert checks["am"].what == "route" and checks["am"].fallback == ("pager", "mail")


def test_reach_tests_of_each_kind(webhook_receiver: Any, tmp_path: Path) -> None:
    assert "accepts connections" in reach(hook(webhook_receiver, tmp_path))
    closed = Alert.model_validate({"kind": "webhook", "url": "http://127.0.0.1:9/x",
                                   "timeout": "1s"})
    for route in (closed, Alert.model_validate({"kind": "command", "command": ["/nonexistent"]}),
                  Alert.model_validate({"kind": "email", "smtp": "127.0.0.1:9", "to": ["a@b.c"],
                                        "timeout": "1s"})):
        try:
            reach(route)
        except Exception as exc:
            assert type(exc).__name__ == "CheckFailed"
        else:
            raise AssertionError(f"{route.label} reached")
    assert "is executable" in reach(Alert.model_validate({"kind": "command",
                                                          "command": ["sh"]}))


def secret(tmp_path: Path) -> Path:
    path = tmp_path / "hook.secret"
    path.write_bytes(b"s3cret\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_monitor_goes_down_alerts_elsewhere_and_resolves(webhook_receiver: Any,
                                                           tmp_path: Path) -> None:
    port = free_port()
    from ringfence.alerts.watch import _connect

    check = Check("monitor", "smtp-relay", "tcp", 0.3, 2, "critical", ("pager",),
                  lambda: _connect("127.0.0.1", port, 1.0))
    silent = Alert.model_validate({"kind": "webhook", "name": "silent",
                                   "url": "http://127.0.0.1:9/x", "retries": 0})
    journal = ListJournal()
    store = SqliteStore(str(tmp_path / "s.db"))
    w = AlertWorker([hook(webhook_receiver, tmp_path), silent], cluster="c", host="hv1",
                    journal=journal, checks=[check])
    w.start(store, lambda: True)
    wait_for(lambda: webhook_receiver.alerts, timeout=15)
    [down] = journal.kinds("monitor_down")
    assert down["target"] == "smtp-relay" and down["count"] == 2
    [body] = webhook_receiver.alerts.values()
    assert body["severity"] == "critical" and "smtp-relay" in body["text"]
    assert body["routes"] == ["pager"]
    assert journal.kinds("alert_sent")[0]["alert"] == body["id"]
    assert not [f for f in journal.kinds("alert_failed") if f.get("target") == "silent"]
    with socket.socket() as listener:  # the system answers again
        listener.bind(("127.0.0.1", port))
        listener.listen()
        wait_for(lambda: f"{body['id']}:resolved" in webhook_receiver.alerts, timeout=15)
    wait_for(lambda: not store.get_prefix(OUTBOX).items)
    w.close()
    assert journal.kinds("monitor_up")[0]["target"] == "smtp-relay"
    assert not store.get_prefix("alerts/firing/").items


def test_a_route_that_fails_its_self_test_is_alerted_through_another(
        webhook_receiver: Any, tmp_path: Path) -> None:
    text = (CLUSTER.split("alerts:")[0] + "alerts:\n"
            "  - {kind: webhook, name: broken, url: 'http://127.0.0.1:9/x', timeout: 1s, "
            "self_test: {every: 1m}}\n"
            f"  - {{kind: webhook, name: pager, url: '{webhook_receiver.url}', "
            f"secret_file: '{secret(tmp_path)}'}}\n")
    journal = ListJournal()
    w = AlertWorker(config(tmp_path, text).alerts, cluster="c", host="hv1", journal=journal,
                    checks=checks_of(config(tmp_path, text)))
    w.start(SqliteStore(str(tmp_path / "s.db")), lambda: True)
    wait_for(lambda: webhook_receiver.alerts, timeout=15)
    w.close()
    [failed] = journal.kinds("route_test_failed")
    assert failed["target"] == "broken" and failed["method"] == "webhook"
    [body] = webhook_receiver.alerts.values()
    assert body["severity"] == "warning" and "broken failed its self-test" in body["text"]


def test_an_info_self_test_sends_a_test_alert(webhook_receiver: Any, tmp_path: Path) -> None:
    route = hook(webhook_receiver, tmp_path, self_test={"every": "1m", "send": "info"})
    text = (CLUSTER.split("alerts:")[0] + "alerts:\n"
            f"  - {{kind: webhook, name: pager, url: '{webhook_receiver.url}', "
            f"secret_file: '{secret(tmp_path)}', self_test: {{every: 1m, send: info}}}}\n")
    journal = ListJournal()
    w = AlertWorker([route], cluster="c", host="hv1", journal=journal,
                    checks=checks_of(config(tmp_path, text)))
    w.start(None, lambda: False)
    wait_for(lambda: webhook_receiver.alerts, timeout=15)
    w.close()
    [body] = webhook_receiver.alerts.values()
    assert body["severity"] == "info" and "self-test" in body["text"]
    assert not journal.kinds("route_test_failed")


def test_a_vm_monitor_reads_the_store(webhook_receiver: Any, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    store.txn([], [Put(vm_owner_key("mon-a"), {"host": "hv1"})])
    check = Check("monitor", "mon-vm", "vm", 0.2, 1, "warning", ("pager",), None, "mon-a")
    journal = ListJournal()
    w = AlertWorker([hook(webhook_receiver, tmp_path)], cluster="c", host="hv1",
                    journal=journal, checks=[check])
    w.start(store, lambda: True)
    wait_for(lambda: journal.kinds("monitor_down"))
    assert "holds no lease" in journal.kinds("monitor_down")[0]["reason"]
    store.txn([], [Put(host_lease_key("hv1"), {"incarnation": 1})])
    wait_for(lambda: journal.kinds("monitor_up"))
    time.sleep(0.2)
    w.close()
    assert journal.kinds("monitor_up")[0]["reason"] == "mon-a runs on hv1"
