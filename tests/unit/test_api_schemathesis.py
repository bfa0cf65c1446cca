"""Every operation of the API against its own OpenAPI document, with requests schemathesis
generates from it (in process, over ASGI): every answer must be one the document lists for
that operation, with the documented content type and a body that matches its schema, and no
request may make the app fail (5xx).

The app reads a real source (`StoreSource`) over a seeded SQLite store and a real journal file
(an incident: host2 lost and fenced, vm2 recovered on host1). Path parameters are the seeded
names half of the time (so that the 200 answers are checked, not only the 404s). Actions carry
an admin token and ``wait=0`` (no leader runs here: a written request is answered ``pending``
at once); the answers without a token or with a weak one are `test_api`'s. The event stream is
left out: it streams until its ``duration``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings

from ringfence.agent.journal import FileJournal
from ringfence.api import StoreSource, create_app
from ringfence.api.auth import Tokens, write_tokens_file
from ringfence.config import parse_cluster
from ringfence.core import leases
from ringfence.store.base import Put
from ringfence.store.sqlite import SqliteStore

CLUSTER = """\
name: schematest
networks: [{name: ring0, role: heartbeat}, {name: ring1, role: heartbeat}]
hosts:
  - {name: host1, cpus: 16, memory: 64GiB}
  - {name: host2, cpus: 16, memory: 64GiB}
vms:
  - {name: vm1, cpus: 1, memory: 1GiB, host: host1}
  - {name: vm2, cpus: 1, memory: 1GiB, host: host2}
alerts:
  - {kind: webhook, name: hook, url: "http://127.0.0.1:9/alerts"}
"""
ADMIN = "a" * 32
KNOWN: dict[str, list[str]] = {"vm": ["vm1", "vm2"], "host": ["host1", "host2"]}
EXAMPLES = 15


def seed_journal(path: Path) -> None:
    journal = FileJournal(path, "host1", echo=None)
    for kind, fields in [
            ("host_joined", {"host": "host1"}), ("host_joined", {"host": "host2"}),
            ("vm_started", {"vm": "vm2", "host": "host2"}),
            ("heartbeat_lost", {"host": "host2", "links": ("ring0", "ring1")}),
            ("host_suspect", {"host": "host2"}),
            ("host_fenced", {"host": "host2", "method": "power"}),
            ("alert_sent", {"host": "host2", "severity": "critical",
                            "detail": "host2 was fenced"}),
            ("alert_delivered", {"host": "host2", "target": "hook", "method": "webhook",
                                 "severity": "critical", "detail": "host2 was fenced",
                                 "count": 1, "reason": "HTTP 200"}),
            ("vm_recovered", {"vm": "vm2", "host": "host1", "source": "host2"}),
            ("vm_verified", {"vm": "vm2", "host": "host1"})]:
        journal.record(kind, **fields)
        time.sleep(0.002)


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[Any]:
    config = parse_cluster(yaml.safe_load(CLUSTER), file="cluster.yaml")
    seed_journal(tmp_path / "journal-host1.jsonl")
    tokens = tmp_path / "tokens"
    write_tokens_file(tokens, [(ADMIN, "alice", "admin")])
    with SqliteStore(str(tmp_path / "store.db")) as store:
        store.txn([], [Put(leases.vm_owner_key("vm1"), {"host": "host1"}),
                       Put(leases.vm_owner_key("vm2"), {"host": "host1"}),
                       Put(leases.MANAGER_KEY, {"host": "host1"})])
        source = StoreSource(config, store, journal_files=[tmp_path / "journal-host1.jsonl"],
                             ttl=0.0)
        app = create_app(source, tokens=Tokens(tokens))
        incidents = [i.id for i in app.state.snapshots.take().incidents]
        assert incidents, "the seeded journal makes an incident"
        KNOWN["incident_id"] = incidents
        yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


def _known(name: str, value: object) -> object:
    """A seeded name instead of `value`, for half the values (by their length)."""
    names = KNOWN.get(name)
    if not names or len(str(value)) % 2:
        return value
    return names[len(str(value)) // 2 % len(names)]


def prepared(case: Any) -> Any:
    """Seeded names for half the path parameters and body fields that name a host; an admin
    token and no wait for actions."""
    for name, value in list((case.path_parameters or {}).items()):
        case.path_parameters[name] = _known(name, value)
    if isinstance(case.body, dict):
        for name in ("host", "to"):
            if isinstance(case.body.get(name), str):
                case.body[name] = _known("host", case.body[name])
    if case.method.upper() == "POST":
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN}"}
        case.query = {**(case.query or {}), "wait": 0}
    return case


# schemathesis' pytest plugin (`schema.parametrize`, `from_fixture`) needs pytest < 9.2 (it
# reads a node attribute that pytest removed); its strategies are run here with Hypothesis.
def test_every_operation_answers_as_its_document_says(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"GET /api/v1/cluster", "GET /api/v1/vms/{vm}", "GET /api/v1/alerts",
            "POST /api/v1/vms/{vm}/force-start", "GET /metrics", "GET /"} <= labels
    seen: dict[str, set[int]] = {}
    for operation in operations:
        if operation.path == "/api/v1/events":
            continue  # a stream: it ends only at its `duration`

        # Derandomized: the same examples every run. Drawn afresh, 15 examples per operation
        # once hit no seeded VM name for force-start at all (only 404s; the run of 7 December).
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = prepared(case).call()
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            case.validate_response(response)

        check()
    # The seeded names were used: the found answers were checked, not only the 404s.
    for label in ("GET /api/v1/vms/{vm}", "GET /api/v1/hosts/{host}",
                  "GET /api/v1/incidents/{incident_id}",
                  "GET /api/v1/incidents/{incident_id}/report.md"):
        assert {200, 404} <= seen[label], (label, seen[label])
    assert seen["POST /api/v1/vms/{vm}/force-start"] & {202, 409}
