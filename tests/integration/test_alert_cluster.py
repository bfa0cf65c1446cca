"""Alerts in a real cluster (the demo's: agent processes, a SQLite store, a webhook receiver on
loopback): the leader dies while it delivers an alert; the next leader delivers it again (the
receiver dedupes by the idempotency key: it arrives once), the alert naming the dead leader
arrives within a bound, and the dead-man pings keep arriving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import WebhookReceiver, new_demo, wait_for
from ringfence.demo import Demo


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


@pytest.fixture
def cluster(tmp_path: Path, receiver: WebhookReceiver) -> Iterator[Demo]:
    demo = new_demo(3, 3, tmp_path, alert_webhooks=[receiver.url])
    demo.write_cluster()
    for host in demo.hosts:
        demo.start_host(host)
    try:
        wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
        wait_for(lambda: demo.leader() is not None, 20, "a leader")
        yield demo
    finally:
        demo.stop()


def naming(receiver: WebhookReceiver, words: str) -> list[dict[str, Any]]:
    with receiver.lock:
        return [a for a in receiver.alerts.values() if words in a["text"]]


def test_leader_dies_while_it_delivers_and_the_alert_arrives_once(
        cluster: Demo, receiver: WebhookReceiver) -> None:
    leader = cluster.leader()
    assert leader is not None
    follower = next(h.name for h in cluster.hosts if h.name != leader)
    # The leader's next delivery hangs in the receiver (recorded, not answered) ...
    receiver.hold = 60.0
    cluster.options.fault_target = follower
    cluster.inject("power_off")
    wait_for(receiver.held.is_set, 30, "the leader to deliver an alert")
    held = set(receiver.alerts)
    # ... and the leader dies with that delivery in flight, its route not marked done.
    cluster.options.fault_target = "leader"
    assert cluster.target() == leader
    cluster.inject("power_off")
    died = cluster.faults[-1].wall
    wait_for(lambda: naming(receiver, f"{leader} fenced"), 30,
             f"the alert that {leader} was fenced")
    alert = naming(receiver, f"{leader} fenced")[0]
    assert alert["severity"] == "critical" and alert["host"] == leader
    assert alert["raised_by"] != leader
    assert receiver.arrived[alert["id"]] - died < 15.0
    # The next leader delivered the held alert again, with the same key: deduped.
    wait_for(lambda: receiver.duplicates >= 1, 30, "the held alert to be delivered again")
    assert held <= set(receiver.alerts)
    assert len(naming(receiver, f"{leader} fenced")) == 1
    assert receiver.bad_signatures == 0
    # Dead-man pings kept coming, from the new leader too.
    pings_before = len(receiver.pings)
    time.sleep(6.0)
    assert len(receiver.pings) > pings_before
    gaps = [b - a for a, b in zip(receiver.pings, receiver.pings[1:], strict=False)]
    assert max(gaps) < 15.0, gaps


def test_the_alert_about_a_dead_host_resolves_when_its_vms_answer_elsewhere(
        cluster: Demo, receiver: WebhookReceiver) -> None:
    cluster.options.fault_target = "leader"
    dead = cluster.target()
    cluster.inject("power_off")
    died = cluster.faults[-1].wall
    wait_for(lambda: naming(receiver, f"{dead} fenced"), 30, f"the alert that {dead} was fenced")
    alert = naming(receiver, f"{dead} fenced")[0]
    assert alert["status"] == "firing" and receiver.arrived[alert["id"]] - died < 5.0
    key = f"{alert['id']}:resolved"
    wait_for(lambda: key in receiver.alerts, 45, "the alert's resolution")
    resolved = receiver.alerts[key]
    assert resolved["id"] == alert["id"] and resolved["status"] == "resolved"
    assert resolved["host"] == dead and resolved["ends_time"]
    assert receiver.arrived[key] >= receiver.arrived[alert["id"]]
    # By then every VM runs on a live host.
    placement = cluster.placement_now()
    assert len(placement) == len(cluster.vms) and dead not in placement.values()
    assert receiver.bad_signatures == 0
