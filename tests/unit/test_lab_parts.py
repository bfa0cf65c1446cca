"""The lab's pure parts, without root: ground truth from disk writes, judging with the
simulator's checker and a tolerance, host states from journals, names and addresses, the
switch's filter rules, the cluster files, and which scenarios the lab refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SCENARIOS, THREE_HOSTS, scenario
from ringfence.cli import main
from ringfence.config import parse_cluster
from ringfence.core.events import Fact
from ringfence.lab.cluster_file import lab_cluster
from ringfence.lab.faults import FAULTS, REFUSED, refusals
from ringfence.lab.judge import LabWorld, alerts_of, build_host_states, judge_run, lab_json
from ringfence.lab.paths import LabPaths
from ringfence.lab.records import LabRecords
from ringfence.lab.store_members import LabStore
from ringfence.lab.topology import Topology
from ringfence.lab.truth import read_writes, runs_of
from ringfence.sim.checker import downtime
from ringfence.sim.scenario import EVENT_FIELDS, load_scenario, parse_scenario
from ringfence.sim.world import JournalEntry, Run


def entry(t: float, kind: str, host: str, text: str) -> JournalEntry:
    """A journal entry about `host` (its writer is given apart, as the lab reads it)."""
    return JournalEntry(t, Fact(kind, host=host), text)


def write_disk(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"torn": ')
    return path


def beats(vm: str, host: str, start: float, end: float, *, token: int = 1,
          seq: int = 0) -> list[dict[str, Any]]:
    out, t = [], start
    while t <= end + 1e-9:
        out.append({"vm": vm, "host": host, "token": token, "seq": seq, "t": 1000.0 + t})
        t, seq = t + 0.1, seq + 1
    return out


# ---------------------------------------------------------------------- ground truth
def test_runs_come_from_the_writes_and_split_at_gaps_and_restarts(tmp_path: Path) -> None:
    lines = (beats("app", "h1", 1.0, 10.0) + beats("app", "h1", 12.0, 15.0, seq=91)
             + beats("app", "h1", 15.1, 16.0, seq=0) + beats("app", "h2", 20.0, 29.95))
    writes = read_writes(write_disk(tmp_path / "disk", lines), t0=1000.0)
    runs, starts = runs_of(writes, duration=30.0)
    spans = [(r.host, round(r.start, 1), round(r.end or 0, 1)) for r in runs]
    assert spans == [("h1", 1.0, 10.0), ("h1", 12.0, 15.0), ("h1", 15.1, 16.0),
                     ("h2", 20.0, 30.0)]  # still writing at the end: runs until the end
    assert starts == {"app": 3}  # three processes began at seq 0


def test_overlapping_writes_are_a_split_brain_for_the_simulators_checker(tmp_path: Path
                                                                          ) -> None:
    lines = beats("db", "a", 0.0, 10.0) + beats("db", "b", 9.5, 20.0)
    runs, starts = runs_of(read_writes(write_disk(tmp_path / "disk", lines), 1000.0), 20.0)
    world = LabWorld(runs, [], [], [], starts, {})
    parsed = parse_scenario(scenario(duration="20s"))
    result = judge_run(parsed, world, 1.0, {"errors": []})
    assert not result.passed
    (violation,) = result.result.violations
    assert violation.vm == "db" and violation.hosts == ("a", "b")
    assert violation.start == pytest.approx(9.5) and violation.end == pytest.approx(10.0)


def test_a_switch_over_within_one_write_interval_is_a_handover_not_downtime(
        tmp_path: Path) -> None:
    # Issue 11: a drained VM's last write on h1 and its first on h2 are one write interval
    # apart; that is the disk's sampling, not downtime. A longer gap stays downtime.
    lines = (beats("db", "h1", 0.0, 10.0, seq=5) + beats("db", "h2", 10.12, 20.0)
             + beats("db", "h2", 21.0, 30.0, seq=9) + beats("db", "h3", 30.5, 40.0))
    runs, starts = runs_of(read_writes(write_disk(tmp_path / "disk", lines), 1000.0), 40.0)
    first, *_ = sorted(runs, key=lambda r: r.start)
    assert first.host == "h1" and first.end == pytest.approx(10.12)
    assert first.handed_to is not None and first.handed_to.host == "h2"
    world = LabWorld(runs, [], [], [], starts, {})
    assert downtime(world, "db", 40.0) == pytest.approx(1.0 + 0.5, abs=0.11)
    result = judge_run(parse_scenario(scenario(duration="40s")), world, 1.0, {"errors": []})
    assert result.result.violations == []


def test_a_restart_on_another_host_after_a_long_gap_is_no_handover(tmp_path: Path) -> None:
    lines = beats("db", "h1", 0.0, 10.0, seq=5) + beats("db", "h2", 10.3, 20.0)
    runs, _ = runs_of(read_writes(write_disk(tmp_path / "disk", lines), 1000.0), 20.0)
    assert all(r.handed_to is None for r in runs)
    assert sorted(round(r.end or 0, 1) for r in runs) == [10.0, 20.0]


# ---------------------------------------------------------------------- tolerance
def _world(runs: list[Run], entries: list[JournalEntry] | None = None,
           hosts: tuple[str, ...] = ("host1", "host2", "host3")) -> LabWorld:
    records = LabRecords(list(hosts))
    entries = entries or []
    return LabWorld(runs, entries, alerts_of(entries), [], {},
                    build_host_states(records, entries, {}))


def _judge(world: LabWorld, expect: list[dict[str, Any]], tolerance: float = 1.0
           ) -> list[dict[str, Any]]:
    parsed = parse_scenario(scenario(duration="60s", expect=expect))
    return lab_json(judge_run(parsed, world, tolerance, {"errors": []}))["expectations"]


def test_time_points_get_the_tolerance_in_the_lenient_direction_only() -> None:
    world = _world([Run("app", "host1", 0.0, 20.0), Run("app", "host2", 30.5, 60.0)],
                   [entry(41.0, "host_fenced", "host1", "fenced")])
    verdicts = _judge(world, [
        {"vm": "app", "running_on": "host2", "at": "30s"},  # 0.5 s early: passes
        {"vm": "app", "running_on": "host2", "at": "28s"},  # 2.5 s early: fails
        {"event": "host_fenced", "host": "host1", "from": "30s", "to": "40s"},  # 1 s late
        {"vm": "app", "not_running_on": "host2", "from": "20s", "to": "31s"},  # shrunk
        {"vm": "app", "max_downtime": "10s"},  # 10.5 s: no tolerance on bounds
    ])
    assert [v["passed"] for v in verdicts] == [True, False, True, True, False]
    assert "within 1s of 30s" in verdicts[0]["detail"]
    assert [v["tolerance_s"] for v in verdicts] == [1.0, 1.0, 1.0, 1.0, None]
    strict = _judge(world, [{"vm": "app", "running_on": "host2", "at": "30s"}], 0.0)
    assert strict[0]["passed"] is False


def test_the_json_document_is_simulates_with_the_lab_added() -> None:
    world = _world([Run("app", "host1", 0.0, 60.0)])
    parsed = parse_scenario(scenario(duration="60s"))
    document = lab_json(judge_run(parsed, world, 1.0, {"errors": [], "slot": 3}))
    assert set(document) == {"scenario", "seed", "passed", "violations", "expectations",
                             "runs", "vms", "hosts", "events", "faults", "alerts", "lab"}
    assert document["vms"]["app"] == {"downtime_s": 0.0, "final_host": "host1", "starts": 0}
    assert document["passed"] is True and document["lab"]["slot"] == 3


def test_a_lab_error_fails_the_run() -> None:
    parsed = parse_scenario(scenario(duration="60s"))
    result = judge_run(parsed, _world([Run("app", "host1", 0.0, 60.0)]), 1.0,
                       {"errors": ["the machine stalled"]})
    assert result.result.passed and not result.passed
    assert lab_json(result)["passed"] is False


# ---------------------------------------------------------------------- host states
def test_host_states_come_from_power_and_the_journal() -> None:
    records = LabRecords(["host1", "host2"])
    records.power["host1"].set(30.0, "off")
    records.power["host1"].set(40.0, "booting")
    records.power["host1"].set(60.0, "up")
    entries = [
        entry(5.0, "jeopardy", "host2", "heard on one link"),
        entry(8.0, "heartbeat_restored", "host1", "every link"),
        entry(32.0, "host_suspect", "host1", "no heartbeat"),
        entry(38.0, "host_fenced", "host1", "fenced"),
        entry(61.0, "host_joined", "host1", "joined with incarnation 2"),
        entry(70.0, "host_ineligible", "host2", "storage"),
        entry(80.0, "host_healthy", "host2", "every check passes"),
    ]
    by = {id(entries[0]): "host2", id(entries[1]): "host2", id(entries[2]): "host2",
          id(entries[3]): "host2", id(entries[4]): "host1", id(entries[5]): "host2",
          id(entries[6]): "host2"}
    states = build_host_states(records, entries, by)
    assert [states["host1"].state(t) for t in (10, 31, 33, 45, 61.5)] == [
        "online", "offline", "suspect", "fenced", "online"]
    assert [states["host2"].state(t) for t in (6, 9, 75, 85)] == [
        "jeopardy", "online", "ineligible", "online"]


# ---------------------------------------------------------------------- names, switch
def test_names_and_addresses_follow_the_slot() -> None:
    cluster = parse_scenario(scenario()).cluster
    a, b = Topology(cluster, 0), Topology(cluster, 7)
    assert a.switch == "rfl0-switch" and b.switch == "rfl7-switch"
    assert b.nodes["host2"].ns == "rfl7-host2"
    assert b.nodes["host2"].nics["ring1"].address == "10.107.1.2"
    assert b.nodes["host2"].nics["ring1"].ifname == "ring1"
    assert set(a.namespaces()).isdisjoint(b.namespaces())
    macs = [nic.mac for t in (a, b) for node in t.nodes.values() for nic in node.nics.values()]
    assert len(set(macs)) == len(macs)


def test_the_file_names_nics_and_macs_the_lab_uses() -> None:
    cluster = load_scenario(SCENARIOS / "001-reboot-renamed-nics-monitoring.yaml").cluster
    hv1 = Topology(cluster, 1).nodes["hv1"]
    assert hv1.nics["ring0"].ifname == "eth0" and hv1.nics["ring0"].mac == "52:54:00:aa:00:01"


def test_partitions_drop_between_groups_and_loss_is_random() -> None:
    data = scenario()
    data["cluster"]["witnesses"] = [{"name": "w", "networks": ["ring0"]}]
    topology = Topology(parse_scenario(data).cluster, 0)
    topology.partition([["host1"], ["host2"]], ["ring0"])
    topology.loss["ring1"] = 0.3
    script = topology.filter_script()
    # host3 and the witness are in no group: they form one more group together
    assert 'iifname "n0p0" oifname { "n1p0", "n2p0", "n3p0" } drop' in script
    assert 'iifname "n2p0" oifname { "n0p0", "n1p0" } drop' in script
    assert "n3p0\" oifname" in script and "ring1" not in script
    # ring1 on the agent's default port for the second network (not corosync's 5405)
    assert 'udp dport 5421 numgen random mod 1000000 < 300000 drop' in script
    topology.heal(None)
    topology.loss.clear()
    assert "drop" not in topology.filter_script()


# ---------------------------------------------------------------------- cluster files
def test_cluster_files_are_valid_and_per_host(tmp_path: Path) -> None:
    cluster = load_scenario(SCENARIOS / "003-reboot-storage-unwritable.yaml").cluster
    topology = Topology(cluster, 2)
    store = LabStore(topology, cluster.store_members(), tmp_path)
    paths = LabPaths(tmp_path)
    mine = lab_cluster(cluster, topology, store, paths, "kct09")
    parse_cluster(yaml.safe_load(yaml.safe_dump(mine)))
    assert mine["store"]["endpoints"][0] == "http://127.0.0.1:2379"  # its own member first
    assert all(h["hypervisor"] == "process" for h in mine["hosts"])
    (rbd,) = mine["datastores"]
    assert rbd["probe"]["path"] == str(paths.datastore("kct09", "rbd") / "probe")
    other = lab_cluster(cluster, topology, store, paths, "kct08")
    assert other["datastores"][0]["probe"]["path"].endswith("hosts/kct08/datastores/rbd/probe")
    # the witness is on ceph only: only its ceph address is an endpoint
    assert "http://10.102.3.3:2379" in mine["store"]["endpoints"]
    assert not any(e.startswith("http://10.102.0.3") for e in mine["store"]["endpoints"])


def test_a_single_store_member_is_the_embedded_sqlite_store(tmp_path: Path) -> None:
    cluster = parse_scenario(scenario(cluster_store={"members": ["host1"]})).cluster
    topology = Topology(cluster, 0)
    store = LabStore(topology, cluster.store_members(), tmp_path)
    data = lab_cluster(cluster, topology, store, LabPaths(tmp_path), "host2")
    assert data["store"]["kind"] == "sqlite" and data["store"]["path"].endswith("store.db")


def test_alert_routes_are_written_with_their_own_kind_s_fields_only(tmp_path: Path) -> None:
    # Found replaying the library: every route was written with every kind's defaults
    # (command, starttls, to ...), which the agents' loader rightly refuses.
    cluster = load_scenario(SCENARIOS / "alert-route-behind-a-dead-host.yaml").cluster
    topology = Topology(cluster, 0)
    store = LabStore(topology, cluster.store_members(), tmp_path)
    data = lab_cluster(cluster, topology, store, LabPaths(tmp_path), "host1")
    parsed = parse_cluster(yaml.safe_load(yaml.safe_dump(data)))
    assert [(r.kind, r.name) for r in parsed.alerts] == [(r.kind, r.name) for r in cluster.alerts]


def test_a_hanging_fence_controller_is_passed_to_the_lab_s_fence_agent(tmp_path: Path) -> None:
    # Found replaying fence-agent-hangs: the lab's controller answered at once, so the
    # scenario's hung fence never happened for real.
    cluster = load_scenario(SCENARIOS / "fence-agent-hangs.yaml").cluster
    topology = Topology(cluster, 0)
    store = LabStore(topology, cluster.store_members(), tmp_path)
    data = lab_cluster(cluster, topology, store, LabPaths(tmp_path), "host1")
    assert data["fencing"]["host2"]["params"]["hang"] == 60.0


def test_route_delivery_expectations_are_refused() -> None:
    # Which route reaches its receiver is the simulator's model; the lab runs no receivers.
    (reason,) = refusals(load_scenario(SCENARIOS / "alert-route-behind-a-dead-host.yaml"))
    assert reason.startswith("expect[1]: an alert's route and delivery")


# ---------------------------------------------------------------------- refusals
def test_every_schema_fault_is_done_or_refused_with_a_reason() -> None:
    for kind in EVENT_FIELDS:
        assert (kind in FAULTS) != (kind in REFUSED), kind  # done, or refused with a reason
    assert "agent_stall" in FAULTS


@pytest.mark.parametrize("name", ["maintenance-drain-and-return.yaml",
                                  "000-carrier-flaps-proactive-evacuation.yaml",
                                  "003-ram-fault-host-replacement.yaml",
                                  "shutdown-policy-migrate.yaml"])
def test_scenarios_that_migrate_process_vms_are_lab_capable(name: str) -> None:
    # Issue 11: a migrated process VM now starts in the target host's namespace.
    assert refusals(load_scenario(SCENARIOS / name)) == []


@pytest.mark.parametrize("name", ["002-node-hangs.yaml", "000-carrier-loss.yaml",
                                  "001-reboot-renamed-nics-monitoring.yaml",
                                  "003-reboot-storage-unwritable.yaml",
                                  "004-two-operators-force-start.yaml",
                                  "lossy-links-no-false-failover.yaml"])
def test_the_seed_scenarios_are_lab_capable(name: str) -> None:
    assert refusals(load_scenario(SCENARIOS / name)) == []


def test_a_refused_scenario_exits_2_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = scenario(THREE_HOSTS, events=[{"at": "10s", "do": "store_wipe"}])
    path = tmp_path / "wipe.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["lab", "run", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert "events[0]: do: store_wipe" in err and "not built in the lab" in err


def test_a_bad_tolerance_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario()))
    assert main(["lab", "run", str(path), "--tolerance", "forever"]) == 2
    assert "--tolerance" in capsys.readouterr().err
