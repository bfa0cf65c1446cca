"""The API over a driven source: access control, actions answered with their outcome, reads
validated against the app's own OpenAPI document, `/metrics` parsed by prometheus-client, and
the dashboard's server-rendered page."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from ringfence.agent.transport import LinkEndpoints, UdpTransport, cluster_key, encode_for
from ringfence.alerts.routes import AlertMessage
from ringfence.alerts.worker import outbox_key
from ringfence.api import create_app
from ringfence.api.auth import Tokens, parse_tokens, write_tokens_file
from ringfence.api.heartbeats import snapshot_of
from ringfence.api.source import read_outbox, unreachable
from ringfence.config import ClusterConfig, parse_cluster
from ringfence.core import leases
from ringfence.core.audit import AUDIT_PREFIX
from ringfence.core.forced import force_request_key
from ringfence.errors import ConfigError
from ringfence.outcomes import classify
from ringfence.status import collect
from ringfence.store.base import Put, Store, StoreUnavailable
from ringfence.store.sqlite import SqliteStore

CLUSTER = """\
name: apitest
networks: [{name: ring0, role: heartbeat}, {name: ring1, role: heartbeat}]
hosts:
  - {name: host1, cpus: 16, memory: 64GiB}
  - {name: host2, cpus: 16, memory: 64GiB}
vms:
  - {name: vm1, cpus: 1, memory: 1GiB, host: host1}
  - {name: vm2, cpus: 1, memory: 1GiB, host: host2}
"""
ADMIN, OPERATOR, VIEWER = "a" * 32, "o" * 32, "v" * 32

Leader = Callable[[dict[str, Any]], list[dict[str, Any]]]


class DrivenSource:
    """A source whose journal a test writes; `leader` plays the leader: it answers each
    audit note it finds in the store with the journal entries it returns."""

    def __init__(self, config: ClusterConfig, store: Store) -> None:
        self._config, self._store = config, store
        self.entries: list[dict[str, Any]] = []
        self.recorded: list[dict[str, Any]] = []
        self.leader: Leader | None = None
        self.answered: set[str] = set()

    @property
    def config(self) -> ClusterConfig:
        return self._config

    @property
    def store(self) -> Store:
        return self._store

    def status(self) -> dict[str, Any]:
        return collect(self._config, self._store)

    def journal(self) -> list[dict[str, Any]]:
        if self.leader is not None:
            for kv in self._store.get_prefix(AUDIT_PREFIX).items:
                if kv.key not in self.answered:
                    self.answered.add(kv.key)
                    self.entries += self.leader(dict(kv.value))
        return list(self.entries)

    def outbox(self) -> list[dict[str, Any]]:
        return read_outbox(self._store)

    def record(self, kind: str, **fields: Any) -> None:
        self.recorded.append({"kind": kind, **fields})


@pytest.fixture
def source(tmp_path: Path) -> Iterator[DrivenSource]:
    config = parse_cluster(yaml.safe_load(CLUSTER), file="cluster.yaml")
    with SqliteStore(str(tmp_path / "store.db")) as store:
        store.txn([], [Put(leases.vm_owner_key("vm1"), {"host": "host1"}),
                       Put(leases.vm_owner_key("vm2"), {"host": "host2"}),
                       Put(leases.MANAGER_KEY, {"host": "host1"})])
        yield DrivenSource(config, store)


@pytest.fixture
def client(source: DrivenSource, tmp_path: Path) -> TestClient:
    tokens = tmp_path / "tokens"
    write_tokens_file(tokens, [(ADMIN, "alice", "admin"), (OPERATOR, "otto", "operator"),
                               (VIEWER, "vera", "viewer")])
    return TestClient(create_app(source, tokens=Tokens(tokens)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def entry(kind: str, **fields: Any) -> dict[str, Any]:
    return {"t": time.time(), "seq": 1, "by": "host1", "kind": kind, "text": kind, **fields}


# ---------------------------------------------------------------------- access control
def test_a_write_without_a_token_is_401_and_journaled(client: TestClient,
                                                      source: DrivenSource) -> None:
    answer = client.post("/api/v1/vms/vm1/stop")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert client.post("/api/v1/vms/vm1/stop", headers=bearer("x" * 32)).status_code == 401
    assert [r["kind"] for r in source.recorded] == ["operator_refused"] * 2
    assert source.store.get(leases.vm_owner_key("vm1")).value == {"host": "host1"}  # type: ignore[union-attr]


def test_a_too_weak_role_is_403_naming_the_user(client: TestClient,
                                                source: DrivenSource) -> None:
    answer = client.post("/api/v1/vms/vm1/stop", headers=bearer(VIEWER))
    assert answer.status_code == 403
    assert "vera" in answer.json()["detail"]
    forced = client.post("/api/v1/vms/vm1/force-start", json={"host": "host2"},
                         headers=bearer(OPERATOR))
    assert forced.status_code == 403
    assert "admin" in forced.json()["detail"]
    assert [r.get("operator") for r in source.recorded] == ["vera", "otto"]


def test_tokens_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    write_tokens_file(path, [(ADMIN, "alice", "admin")])
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Tokens(path)


def test_tokens_file_lines_are_checked() -> None:
    with pytest.raises(ConfigError, match="tokens:2: unknown role 'root'"):
        parse_tokens(f"# comment\n{ADMIN} alice root\n", "tokens")
    with pytest.raises(ConfigError, match="at least 16"):
        parse_tokens("short alice admin\n", "tokens")
    assert parse_tokens(f"{ADMIN} alice admin\n", "t")[ADMIN].role == "admin"


# ---------------------------------------------------------------------- actions
def test_an_action_is_audited_with_the_tokens_user_and_answers_done(
        client: TestClient, source: DrivenSource) -> None:
    source.leader = lambda note: [entry(note["kind"], vm=note.get("vm"),
                                        request=note["request"], operator=note["operator"]),
                                  entry("vm_stopped", vm=note.get("vm"), host="host1",
                                        request=note["request"], operator=note["operator"])]
    answer = client.post("/api/v1/vms/vm1/stop?wait=5", headers=bearer(OPERATOR))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "done" and body["operator"] == "otto"
    assert {e["kind"] for e in body["events"]} == {"vm_stop_requested", "vm_stopped"}
    record = source.store.get(leases.vm_owner_key("vm1"))
    assert record is not None and record.value["stopped_by"] == "otto"


def test_a_refusal_by_the_leader_is_answered_as_a_refusal(client: TestClient,
                                                           source: DrivenSource) -> None:
    source.leader = lambda note: [entry("vm_migrate_refused", vm="vm1", target="host1",
                                        reason="vm1 already runs on host1",
                                        request=note["request"], operator=note["operator"])]
    answer = client.post("/api/v1/vms/vm1/migrate?wait=5", json={"to": "host1"},
                         headers=bearer(OPERATOR))
    assert answer.status_code == 409
    assert answer.json()["status"] == "refused"
    assert answer.json()["reason"] == "vm1 already runs on host1"


def test_a_request_refused_at_once_and_one_left_pending(client: TestClient,
                                                        source: DrivenSource) -> None:
    first = client.post("/api/v1/vms/vm2/migrate?wait=0", json={"to": "host1"},
                        headers=bearer(OPERATOR))
    assert first.status_code == 202
    pending = first.json()
    assert pending["status"] == "pending" and pending["poll"].endswith(pending["request"])
    second = client.post("/api/v1/vms/vm2/migrate?wait=0", json={"to": "host1"},
                         headers=bearer(ADMIN))
    assert second.status_code == 409
    assert "already pending" in second.json()["reason"]
    assert source.recorded[-1]["kind"] == "operator_refused"
    source.entries.append(entry("vm_migrating", vm="vm2", token=7,
                                request=pending["request"], operator="otto"))
    polled = client.get(pending["poll"]).json()
    assert polled["status"] == "accepted" and polled["operator"] == "otto"
    source.entries.append(entry("vm_migrated", vm="vm2", token=7, host="host1"))
    assert client.get(pending["poll"]).json()["status"] == "done"


def test_maintenance_and_force_start_write_the_clis_requests(client: TestClient,
                                                              source: DrivenSource) -> None:
    on = client.post("/api/v1/hosts/host2/maintenance?wait=0", json={"on": True},
                     headers=bearer(OPERATOR))
    assert on.status_code == 202
    record = source.store.get(leases.host_maintenance_key("host2"))
    assert record is not None and record.value["by"] == "otto"
    forced = client.post("/api/v1/vms/vm1/force-start?wait=0", json={"host": "host2"},
                         headers=bearer(ADMIN))
    assert forced.status_code == 202
    assert client.post("/api/v1/vms/nope/stop", headers=bearer(ADMIN)).status_code == 404


def test_classify_orders_refusal_before_accepted() -> None:
    entries = [entry("operator_request", request="r-1"),
               entry("force_start_refused", request="r-1", reason="host2 is heard")]
    assert classify("r-1", entries).status == "refused"
    assert classify("r-2", entries).status == "pending"


# ---------------------------------------------------------------------- reads, OpenAPI
def _resolve(schema: Any, spec: dict[str, Any]) -> Any:
    return {**schema, "components": spec["components"]}


def test_reads_match_the_openapi_document(client: TestClient, source: DrivenSource) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    validate(spec)
    source.entries.append(entry("vm_recovered", vm="vm2", host="host1", source="host2"))
    for path, template in [("/api/v1/cluster", "/api/v1/cluster"),
                           ("/api/v1/hosts", "/api/v1/hosts"),
                           ("/api/v1/hosts/host1", "/api/v1/hosts/{host}"),
                           ("/api/v1/vms", "/api/v1/vms"),
                           ("/api/v1/vms/vm2", "/api/v1/vms/{vm}"),
                           ("/api/v1/incidents", "/api/v1/incidents"),
                           ("/api/v1/journal?kind=vm_recovered", "/api/v1/journal")]:
        answer = client.get(path)
        assert answer.status_code == 200, path
        schema = spec["paths"][template]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]
        jsonschema.validate(answer.json(), _resolve(schema, spec))
    assert client.get("/api/v1/vms/vm2").json()["moved_from"] == "host2"
    assert [e["kind"] for e in client.get("/api/v1/journal?kind=vm_recovered").json()] == [
        "vm_recovered"]
    assert client.get("/api/v1/hosts/nope").status_code == 404


def test_events_stream_sends_journal_lines(client: TestClient, source: DrivenSource) -> None:
    source.entries.append(entry("host_joined", host="host1"))
    with client.stream("GET", "/api/v1/events?since=0&duration=0.2") as stream:
        text = "".join(stream.iter_text())
    assert "event: journal" in text and "host_joined" in text


def test_metrics_parse_and_name_the_cluster(client: TestClient, source: DrivenSource) -> None:
    source.entries.append(entry("alert_sent", severity="critical", detail="host2 is gone"))
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    for name in ("ringfence_store_quorum", "ringfence_cluster_leader", "ringfence_host_state",
                 "ringfence_vms", "ringfence_alerts", "ringfence_failover_duration_seconds"):
        assert name in families, name
    leader = {s.labels["host"]: s.value for s in families["ringfence_cluster_leader"].samples}
    assert leader == {"host1": 1.0, "host2": 0.0}
    running = [s.value for s in families["ringfence_vms"].samples
               if s.labels["state"] == "running"]
    assert running == [2.0]
    assert families["ringfence_store_quorum"].samples[0].value == 1.0


def test_dashboard_is_readable_without_javascript(client: TestClient,
                                                  source: DrivenSource) -> None:
    source.entries.append(entry("vm_recovered", vm="vm2", host="host1", source="host2"))
    page = client.get("/").text
    assert "<table>" in page and "host1" in page and "from host2" in page
    assert "<svg" in page and "/static/dashboard.js" in page
    assert client.get("/static/dashboard.js").status_code == 200


# ---------------------------------------------------------------------- refused heartbeats
def _families(client: TestClient) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}


def _sample(families: dict[str, Any], name: str, **labels: str) -> float:
    """The one sample `name` (e.g. ``x_total``, ``x_bucket``) with these labels."""
    found = [s.value for family in families.values() for s in family.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_count_forged_and_replayed_heartbeats(source: DrivenSource) -> None:
    key = b"k" * 32
    links = [LinkEndpoints(name, [("127.0.0.1", _udp_port()), ("127.0.0.1", _udp_port())])
             for name in ("ring0", "ring1")]
    transport = UdpTransport(key, 0, links, 2, cluster="apitest")
    try:
        client = TestClient(create_app(source, heartbeats=lambda: [snapshot_of(
            transport, ["host1", "host2"], "host1", ["ring0", "ring1"])]))
        before = _families(client)
        for network in ("ring0", "ring1"):
            assert _sample(before, "ringfence_heartbeat_auth_failures_total", host="host1",
                           network=network) == 0
            assert _sample(before, "ringfence_heartbeat_replays_total", host="host1",
                           peer="host2", network=network) == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            (forged,) = encode_for(cluster_key(b"x" * 32, "apitest"), link=0, sender=1,
                                   epoch=1, seq=1, flags=0, store=0, heard=[True, True],
                                   receivers=[(0, transport.epoch)])
            attacker.sendto(forged, links[0].addresses[0])
            (genuine,) = encode_for(cluster_key(key, "apitest"), link=1, sender=1, epoch=5,
                                    seq=7, flags=0, store=0, heard=[True, True],
                                    receivers=[(0, transport.epoch)])
            attacker.sendto(genuine, links[1].addresses[0])
            attacker.sendto(genuine, links[1].addresses[0])  # recorded and sent again
        deadline = time.monotonic() + 5.0
        while (time.monotonic() < deadline
               and transport.drops.forged + transport.drops.replayed < 2):
            transport.receive()
            time.sleep(0.01)
        after = _families(client)
        assert _sample(after, "ringfence_heartbeat_auth_failures_total", host="host1",
                       network="ring0") == 1
        assert _sample(after, "ringfence_heartbeat_auth_failures_total", host="host1",
                       network="ring1") == 0
        assert _sample(after, "ringfence_heartbeat_replays_total", host="host1",
                       peer="host2", network="ring1") == 1
        assert _sample(after, "ringfence_heartbeat_replays_total", host="host1",
                       peer="host2", network="ring0") == 0
    finally:
        transport.close()


# ---------------------------------------------------------------------- alert deliveries
ROUTES = """\
alerts:
  - {kind: webhook, name: hook, url: "http://127.0.0.1:9/alerts"}
  - {kind: webhook, name: pager, url: "http://127.0.0.1:9/pager", min_severity: critical}
"""


def test_alert_deliveries_in_metrics_dashboard_and_api(tmp_path: Path) -> None:
    config = parse_cluster(yaml.safe_load(CLUSTER + ROUTES), file="cluster.yaml")
    now = time.time()
    with SqliteStore(str(tmp_path / "store.db")) as store:
        source = DrivenSource(config, store)
        client = TestClient(create_app(source))
        assert _sample(_families(client), "ringfence_alert_outbox_owed", route="hook") == 0
        gone, lost = "host2 is gone", "heartbeat link lost: ring1"
        source.entries += [
            entry("alert_sent", severity="critical", detail=gone) | {"t": now - 30},
            entry("alert_delivered", target="hook", method="webhook", severity="critical",
                  detail=gone, count=1, reason="HTTP 200") | {"t": now - 29},
            entry("alert_failed", target="pager", method="webhook", severity="critical",
                  detail=gone, count=4, reason="connection refused") | {"t": now - 20},
            entry("alert_sent", severity="warning", detail=lost) | {"t": now - 5},
            entry("alert_failed", target="hook", method="webhook", severity="warning",
                  detail="an older one", count=0, reason="rate limit: more than 5 alerts "
                                                         "in 60s") | {"t": now - 4}]
        message = AlertMessage("a-1", "warning", lost, None, None, "apitest", "host1", now - 5)
        store.txn([], [Put(outbox_key("a-1"), {"alert": message.to_json(), "done": []})])
        families = _families(client)
        for route, outcome, count in [("hook", "delivered", 1), ("pager", "failed", 1),
                                      ("hook", "rate_limited", 1)]:
            assert _sample(families, "ringfence_alert_deliveries_total", route=route,
                           method="webhook", outcome=outcome) == count
        assert _sample(families, "ringfence_alert_outbox_owed", route="hook") == 1
        assert _sample(families, "ringfence_alert_outbox_owed", route="pager") == 0  # warning
        alerts = client.get("/api/v1/alerts").json()
        assert [a["text"] for a in alerts] == [lost, gone]  # newest first
        assert [(d["route"], d["state"]) for d in alerts[0]["deliveries"]] == [
            ("hook", "pending")]
        assert [(d["route"], d["state"], d["detail"]) for d in alerts[1]["deliveries"]] == [
            ("hook", "delivered", "HTTP 200"), ("pager", "failed", "connection refused")]
        page = client.get("/").text
        assert "hook: delivered" in page and "pager: failed" in page and "hook: pending" in page


# ---------------------------------------------------------------------- forced start
def test_a_forced_start_needs_admin_is_audited_and_answers_done(
        client: TestClient, source: DrivenSource) -> None:
    forbidden = client.post("/api/v1/vms/vm1/force-start", json={"host": "host2"},
                            headers=bearer(OPERATOR))
    assert forbidden.status_code == 403
    assert source.store.get(force_request_key("vm1")) is None  # nothing written
    notes: list[dict[str, Any]] = []

    def leader(note: dict[str, Any]) -> list[dict[str, Any]]:
        notes.append(note)
        return [entry("operator_request", vm="vm1", request=note["request"],
                      operator=note["operator"]),
                entry("force_start", vm="vm1", host="host2", cause="carried_out",
                      source="host1", request=note["request"], operator=note["operator"])]

    source.leader = leader
    forced = client.post("/api/v1/vms/vm1/force-start?wait=5",
                         json={"host": "host2", "confirm_down": ["host1"]},
                         headers=bearer(ADMIN))
    assert forced.status_code == 200, forced.text
    body = forced.json()
    assert body["status"] == "done" and body["operator"] == "alice"
    request = source.store.get(force_request_key("vm1"))
    assert request is not None
    assert request.value == {"host": "host2", "operator": "alice", "confirm_down": ["host1"],
                             "request": body["request"]}
    assert [(n["operator"], n["request"]) for n in notes] == [("alice", body["request"])]


def test_a_forced_start_the_leader_refuses_is_answered_409(client: TestClient,
                                                           source: DrivenSource) -> None:
    source.leader = lambda note: [entry("force_start_refused", vm="vm1", host="host2",
                                        reason="host2 is not a live member of the cluster",
                                        request=note["request"], operator=note["operator"])]
    refused = client.post("/api/v1/vms/vm1/force-start?wait=5", json={"host": "host2"},
                          headers=bearer(ADMIN))
    assert refused.status_code == 409
    assert refused.json()["reason"] == "host2 is not a live member of the cluster"
    assert refused.json()["operator"] == "alice"
    second = client.post("/api/v1/vms/vm1/force-start?wait=0", json={"host": "host1"},
                         headers=bearer(ADMIN))
    assert second.status_code == 409  # the first request is still in the store
    assert "by alice onto host2 is already pending" in second.json()["reason"]


class NoQuorum:
    """A store that answers nothing (every call: StoreUnavailable)."""

    def __getattr__(self, name: str) -> Any:
        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("no quorum: 1 of 3 members answer")
        return unavailable


def test_a_forced_start_without_quorum_is_refused_with_the_stores_error(
        source: DrivenSource, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    write_tokens_file(tokens, [(ADMIN, "alice", "admin")])
    source._store = NoQuorum()  # type: ignore[assignment]
    source.status = lambda: unreachable(source.config, StoreUnavailable("1 of 3"))  # type: ignore[method-assign]
    client = TestClient(create_app(source, tokens=Tokens(tokens)))
    refused = client.post("/api/v1/vms/vm1/force-start", json={"host": "host2"},
                          headers=bearer(ADMIN))
    assert refused.status_code == 409
    assert refused.json()["status"] == "refused" and refused.json()["operator"] == "alice"
    assert "no quorum" in refused.json()["reason"]
    assert source.recorded[-1]["kind"] == "operator_refused"
    assert source.recorded[-1]["operator"] == "alice"


def test_metrics_count_fences_by_path_restarts_and_failover_durations(
        client: TestClient, source: DrivenSource) -> None:
    now = time.time()
    families = _families(client)
    for path, outcome in [("fence_agent", "success"), ("fence_agent", "failure"),
                          ("watchdog", "success")]:
        assert _sample(families, "ringfence_fences_total", path=path, outcome=outcome) == 0
    source.entries += [
        entry(kind, **fields) | {"t": now - 60 + i}
        for i, (kind, fields) in enumerate([
            ("vm_started", {"vm": "vm2", "host": "host2"}),
            ("heartbeat_lost", {"host": "host2"}), ("host_suspect", {"host": "host2"}),
            ("fence_agent_failed", {"host": "host2", "detail": "no answer in 10s"}),
            ("host_fenced", {"host": "host2", "method": "watchdog (fence agent failed)"}),
            ("vm_recovered", {"vm": "vm2", "host": "host1", "source": "host2"}),
            ("vm_started", {"vm": "vm2", "host": "host1"}),
            ("vm_verified", {"vm": "vm2", "host": "host1"}),
            ("vm_crashed", {"vm": "vm1", "host": "host1"}),
            ("vm_restarted", {"vm": "vm1", "host": "host1"}),
            ("failsafe_entered", {"host": "host1"})])]
    families = _families(client)
    assert _sample(families, "ringfence_fences_total", path="fence_agent",
                   outcome="failure") == 1
    assert _sample(families, "ringfence_fences_total", path="watchdog", outcome="success") == 1
    assert _sample(families, "ringfence_fences_total", path="fence_agent",
                   outcome="success") == 0
    assert _sample(families, "ringfence_vm_restarts_total") == 1
    assert _sample(families, "ringfence_vm_recoveries_total") == 1
    assert _sample(families, "ringfence_host_failsafe", host="host1") == 1
    assert _sample(families, "ringfence_host_failsafe", host="host2") == 0
    # vm2: down from host2's lost heartbeats to its start on host1, 5 s
    assert _sample(families, "ringfence_failover_duration_seconds_count") == 1
    assert 4 < _sample(families, "ringfence_failover_duration_seconds_sum") < 6
    assert _sample(families, "ringfence_failover_duration_seconds_bucket", le="10.0") == 1
    assert _sample(families, "ringfence_failover_duration_seconds_bucket", le="+Inf") == 1
    assert _sample(families, "ringfence_store_quorum") == 1
    states = {s.labels["state"] for s in families["ringfence_host_state"].samples
              if s.labels["host"] == "host1" and s.value == 1}
    assert len(states) == 1
