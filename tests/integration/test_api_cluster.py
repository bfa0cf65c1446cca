"""The API, metrics and dashboard of a real cluster (the demo's: agents as processes, a shared
SQLite store, process VMs): access control, an action refused by the leader answered as a
refusal and audited with the token's user, responses checked against the OpenAPI document,
`/metrics` parsed by prometheus-client, and the dashboard in headless Chromium before and after
a power cut (screenshots in the artefacts directory: $RINGFENCE_ARTEFACTS, else
test-artefacts/ in the repository)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO, new_demo, wait_for
from ringfence.api.auth import write_tokens_file
from ringfence.demo import Demo, serve_api

OPERATOR, VIEWER = "o" * 40, "v" * 40
ARTEFACTS = Path(os.environ.get("RINGFENCE_ARTEFACTS") or REPO / "test-artefacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Demo, httpx.Client]]:
    demo = new_demo(3, 4, tmp_path)
    demo.write_cluster()
    server = serve_api(demo, free_port())
    assert server is not None
    admin = demo.token_file.read_text().split("\n")[1]
    write_tokens_file(demo.token_file, [tuple(admin.split()),  # type: ignore[list-item]
                                        (OPERATOR, "otto", "operator"),
                                        (VIEWER, "vera", "viewer")])
    for host in demo.hosts:
        demo.start_host(host)
    try:
        with httpx.Client(base_url=server.url, timeout=20) as client:
            wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
            yield demo, client
    finally:
        demo.stop()
        server.stop()


def check(client: httpx.Client, spec: dict[str, Any], path: str, template: str) -> Any:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.text)
    schema = spec["paths"][template]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    jsonschema.validate(answer.json(), {**schema, "components": spec["components"]})
    return answer.json()


def screenshot(url: str, name: str) -> Path | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTEFACTS / name
    target.unlink(missing_ok=True)
    subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox",
                    f"--screenshot={target}", "--window-size=1280,900",
                    url],
                   capture_output=True, timeout=60, check=False)
    return target


def test_api_of_a_real_cluster(served: tuple[Demo, httpx.Client]) -> None:
    demo, client = served
    spec = client.get("/api/v1/openapi.json").json()
    validate(spec)
    cluster = check(client, spec, "/api/v1/cluster", "/api/v1/cluster")
    assert cluster["store"]["quorum"] and cluster["leader"]
    hosts = check(client, spec, "/api/v1/hosts", "/api/v1/hosts")
    assert {h["state"] for h in hosts} == {"online"}
    vms = check(client, spec, "/api/v1/vms", "/api/v1/vms")
    check(client, spec, "/api/v1/vms/vm1", "/api/v1/vms/{vm}")
    check(client, spec, "/api/v1/hosts/host1", "/api/v1/hosts/{host}")
    vm1 = next(v for v in vms if v["name"] == "vm1")

    assert client.post("/api/v1/vms/vm1/stop").status_code == 401
    weak = client.post("/api/v1/vms/vm1/stop", headers={"Authorization": f"Bearer {VIEWER}"})
    assert weak.status_code == 403
    refused = client.post("/api/v1/vms/vm1/migrate?wait=15", json={"to": vm1["host"]},
                          headers={"Authorization": f"Bearer {OPERATOR}"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["status"] == "refused" and "already runs on" in body["reason"]
    audited = check(client, spec, "/api/v1/journal?kind=operator_request,vm_migrate_refused",
                    "/api/v1/journal")
    mine = [e for e in audited if e.get("request") == body["request"]]
    assert {e["kind"] for e in mine} == {"operator_request", "vm_migrate_refused"}
    assert {e["operator"] for e in mine} == {"otto"}
    refusals = client.get("/api/v1/journal?kind=operator_refused").json()
    assert any(e.get("operator") == "vera" for e in refusals)

    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families["ringfence_store_quorum"].samples[0].value == 1.0
    links = [s for s in families["ringfence_link_up"].samples]
    assert links and all(s.value == 1.0 for s in links)
    assert sum(s.value for s in families["ringfence_vms"].samples) == len(demo.vms)
    for name in ("ringfence_host_state", "ringfence_host_lease_age_seconds",
                 "ringfence_host_failsafe", "ringfence_cluster_leader", "ringfence_vm_restarts",
                 "ringfence_fences", "ringfence_failover_duration_seconds",
                 "ringfence_alert_deliveries", "ringfence_alert_outbox_owed"):
        assert name in families, name
    ages = families["ringfence_host_lease_age_seconds"].samples
    assert {s.labels["host"] for s in ages} == {h.name for h in demo.hosts}
    assert all(0 <= s.value < 6 for s in ages)  # renewed within the lease's TTL
    leader = [s.labels["host"] for s in families["ringfence_cluster_leader"].samples
              if s.value == 1]
    assert leader == [cluster["leader"]]


def test_dashboard_before_and_after_a_power_cut(served: tuple[Demo, httpx.Client]) -> None:
    demo, client = served
    url = str(client.base_url)
    page = client.get("/").text
    assert all(f'data-host="{h.name}"' in page for h in demo.hosts)
    screenshot(url, "dashboard-before.png")

    demo.inject("power_off")
    victim = demo.faults[0].host
    assert victim is not None
    moved = sorted(vm for vm, host in demo.placement_now(window=3.0).items() if host == victim)

    def after() -> bool:
        vms = {v["name"]: v for v in client.get("/api/v1/vms").json()}
        incidents = client.get("/api/v1/incidents").json()
        return (all(vms[vm]["moved_from"] == victim and vms[vm]["host"] != victim
                    for vm in moved)
                and any(victim in i["hosts"] and i["vms"] for i in incidents))

    wait_for(after, 60, f"the VMs of {victim} to move and an incident to name it")
    page = client.get("/").text
    shot = screenshot(url, "dashboard-after.png")
    row = page.split(f'data-host="{victim}"')[1].split("</tr>")[0]
    assert "online" not in row, row  # the dead host is named as what it is
    for vm in moved:
        assert f"from {victim}" in page.split(f'data-vm="{vm}"')[1].split("</tr>")[0]
        assert f"{vm}: {victim} →" in page  # the incident's per-VM line, with its downtime
    assert "down " in page and "report.html" in page
    if shot is not None:
        assert shot.exists() and shot.stat().st_size > 10_000


def test_an_agent_with_an_api_section_serves_it(tmp_path: Path) -> None:
    import yaml

    demo = new_demo(2, 2, tmp_path)
    demo.write_cluster()
    cluster = yaml.safe_load(demo.config_path.read_text())
    tokens = tmp_path / "tokens"
    write_tokens_file(tokens, [(OPERATOR, "ann", "operator")])
    port = free_port()
    # Both agents on one machine ask for the same port: one serves, the other runs on without.
    cluster["api"] = {"listen": f"127.0.0.1:{port}", "tokens_file": str(tokens)}
    demo.config_path.write_text(yaml.safe_dump(cluster))
    for host in demo.hosts:
        demo.start_host(host)
    try:
        wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            assert client.get("/api/v1/cluster").json()["store"]["quorum"]
            stop = client.post("/api/v1/vms/vm1/stop",
                               headers={"Authorization": f"Bearer {OPERATOR}"})
            assert stop.status_code == 200, stop.text
            assert stop.json()["status"] == "done" and stop.json()["operator"] == "ann"
            assert client.post("/api/v1/vms/vm1/start").status_code == 401
            wait_for(lambda: any(e.get("kind") == "operator_refused" for e in client.get(
                "/api/v1/journal?kind=operator_refused").json()), 10, "the refusal journaled")
        assert "vm1" not in demo.placement_now(window=0.5)
    finally:
        demo.stop()


def test_an_agents_metrics_count_a_forged_heartbeat_and_its_api_forces_a_start(
        tmp_path: Path) -> None:
    """The agent serving the API exports the heartbeats it refused: a datagram with the wrong
    key sent to its ring0 port shows in `ringfence_heartbeat_auth_failures_total`. A forced
    start through its API: 403 for an operator, done for an admin, audited with their name."""
    import yaml

    from ringfence.agent.transport import cluster_key, encode_for

    demo = new_demo(2, 2, tmp_path)
    demo.write_cluster()
    cluster = yaml.safe_load(demo.config_path.read_text())
    tokens = tmp_path / "tokens"
    admin = "d" * 40
    write_tokens_file(tokens, [(OPERATOR, "ann", "operator"), (admin, "ada", "admin")])
    port = free_port()
    cluster["api"] = {"listen": f"127.0.0.1:{port}", "tokens_file": str(tokens)}
    demo.config_path.write_text(yaml.safe_dump(cluster))
    first, second = demo.hosts
    demo.start_host(first)  # it takes the port; the second runs on without the API

    def families(client: httpx.Client) -> dict[str, Any]:
        return {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}

    def failures(client: httpx.Client) -> dict[tuple[str, str], float]:
        return {(s.labels["host"], s.labels["network"]): s.value
                for s in families(client)["ringfence_heartbeat_auth_failures"].samples
                if s.name.endswith("_total")}

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            def listening() -> bool:
                try:
                    return client.get("/api/v1/cluster").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(listening, 30, f"{first.name}'s API")
            demo.start_host(second)
            wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
            before = failures(client)
            assert set(before) == {(first.name, "ring0"), (first.name, "ring1")}
            ring0 = (f"127.0.1.{first.index + 1}", int(cluster["networks"][0]["port"]))
            (forged,) = encode_for(cluster_key(b"x" * 32, "demo"), link=0, sender=1, epoch=1,
                                   seq=1, flags=0, store=0, heard=[True, True],
                                   receivers=[(first.index, 1)])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
                attacker.sendto(forged, ring0)
            wait_for(lambda: failures(client)[(first.name, "ring0")]
                     == before[(first.name, "ring0")] + 1, 10, "the forged heartbeat counted")
            assert failures(client)[(first.name, "ring1")] == before[(first.name, "ring1")]
            replays = families(client)["ringfence_heartbeat_replays"].samples
            assert {(s.labels["peer"], s.labels["network"]) for s in replays
                    if s.name.endswith("_total")} == {(second.name, "ring0"),
                                                       (second.name, "ring1")}

            holder = demo.placement_now()["vm1"]
            target = second.name if holder == first.name else first.name
            body = {"host": target}
            weak = client.post("/api/v1/vms/vm1/force-start", json=body,
                               headers={"Authorization": f"Bearer {OPERATOR}"})
            assert weak.status_code == 403, weak.text
            forced = client.post("/api/v1/vms/vm1/force-start?wait=20", json=body,
                                 headers={"Authorization": f"Bearer {admin}"})
            assert forced.status_code == 200, forced.text
            answer = forced.json()
            assert answer["status"] == "done" and answer["operator"] == "ada"
            wait_for(lambda: demo.placement_now(window=0.5).get("vm1") == target, 30,
                     f"vm1 to run on {target}")
            audited = client.get("/api/v1/journal?kind=operator_request,force_start").json()
            mine = [e for e in audited if e.get("request") == answer["request"]]
            assert {e["kind"] for e in mine} == {"operator_request", "force_start"}
            assert {e["operator"] for e in mine} == {"ada"}
    finally:
        demo.stop()
