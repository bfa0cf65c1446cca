"""Incidents built from journaled events alone, checked against the simulator's ground truth.

The simulator records, besides the journal, where every VM really ran (`World.runs`). The
incident builder never sees that: it reads the events, as it would read real hosts' journals.
These tests prove that what it computes (when each VM stopped, when it ran again, the fence
path that made the restart safe, whether it was verified) agrees with what really happened, to
within one heartbeat interval, for the seed scenarios, and that it never under-reports a
downtime anywhere in the scenario library.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SCENARIOS
from ringfence.core.events import fact_fields
from ringfence.errors import ConfigError
from ringfence.journal.events import Event, from_journal_files, from_world, merge_duplicates
from ringfence.journal.incidents import Incident, Outage, VmImpact, build_incidents
from ringfence.sim.checker import downtime
from ringfence.sim.runner import SimulationResult, simulate
from ringfence.sim.scenario import load_scenario

HEARTBEAT = 0.2  # every seed scenario runs the default 200 ms heartbeat
TOLERANCE = HEARTBEAT + 1e-6
SEED_SCENARIOS = [
    "000-carrier-loss", "000-carrier-flaps-proactive-evacuation", "003-reboot-storage-unwritable",
    "003-ram-fault-host-replacement", "002-node-hangs", "004-split-site-with-quorum-server",
    "001-reboot-renamed-nics-monitoring",
]
LIBRARY = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


@functools.cache
def run(name: str) -> SimulationResult:
    return simulate(load_scenario(SCENARIOS / f"{name}.yaml"))


@functools.cache
def incidents_of(name: str) -> tuple[Incident, ...]:
    result = run(name)
    return tuple(build_incidents(from_world(result.world), stream_end=result.scenario.duration))


def by_id(name: str, incident_id: str) -> Incident:
    return next(i for i in incidents_of(name) if i.id == incident_id)


def vm_of(incident: Incident, vm: str) -> VmImpact:
    return next(v for v in incident.vms if v.vm == vm)


def truth_gaps(result: SimulationResult, vm: str) -> list[tuple[float, float | None]]:
    """(stopped, running again) per interruption of `vm`, from the simulated hypervisors;
    `None`: still down at the end of the run. A live migration is a zero-length gap."""
    runs = sorted((r for r in result.world.runs if r.vm == vm), key=lambda r: r.start)
    gaps: list[tuple[float, float | None]] = [
        (a.end if a.end is not None else result.scenario.duration, b.start)
        for a, b in itertools.pairwise(runs)]
    if runs and (runs[-1].end or 0.0) < result.scenario.duration:
        gaps.append((runs[-1].end or 0.0, None))
    return gaps


def matching_gap(result: SimulationResult, outage: Outage) -> tuple[float, float | None]:
    gaps = truth_gaps(result, outage.vm)
    if outage.back_at is None:
        open_gaps = [g for g in gaps if g[1] is None]
        assert open_gaps, f"{outage.vm} is still down by the events, but runs by ground truth"
        return open_gaps[0]
    back = outage.back_at
    return min(gaps, key=lambda g: abs((g[1] if g[1] is not None else 1e9) - back))


def planned_gap(result: SimulationResult, vm: str, gap: tuple[float, float | None]) -> bool:
    """Ground truth of planned work: the gap began with a scheduled clean `reboot` or
    `shutdown` of the host `vm` ran on, and no other fault (by the scenario's schedule) touched
    that host or the whole cluster from a minute before until it ran again."""
    down, back = gap
    end = back if back is not None else result.scenario.duration
    runs = [r for r in result.world.runs if r.vm == vm and r.end is not None
            and abs(r.end - down) <= 1e-6]
    if not runs:
        return False
    host = runs[0].host
    events = result.scenario.events
    began = any(e.do in ("reboot", "shutdown") and e.host == host and abs(e.at - down) <= 0.2
                for e in events)
    # A fault on that host, or on the whole cluster (a witness, a partition), from a minute
    # before: the VM may not have come back as planned because of it.
    other = any(e.host in (host, None) and e.do not in ("reboot", "shutdown", "maintenance")
                and down - 60.0 <= e.at <= end for e in events)
    return began and not other


def check_against_truth(name: str) -> None:
    result = run(name)
    duration = result.scenario.duration
    totals: dict[str, float] = {}
    uncertain: set[str] = set()
    for incident in incidents_of(name):
        for impact in incident.vms:
            totals[impact.vm] = totals.get(impact.vm, 0.0) + impact.downtime_s
            for outage in impact.outages:
                down, back = matching_gap(result, outage)
                if outage.back_at is not None:
                    assert back is not None and abs(back - outage.back_at) <= TOLERANCE, (
                        f"{name} {outage.vm}: running again at {outage.back_at} by the events, "
                        f"{back} by ground truth")
                if outage.uncertain:
                    uncertain.add(outage.vm)
                    assert outage.down_earliest - TOLERANCE <= down \
                        <= outage.down_latest + TOLERANCE, (
                        f"{name} {outage.vm}: stopped at {down} by ground truth, outside the "
                        f"stated interval {outage.down_earliest}..{outage.down_latest}")
                else:
                    assert abs(down - outage.down_at) <= TOLERANCE, (
                        f"{name} {outage.vm}: stopped at {outage.down_at} by the events, "
                        f"{down} by ground truth ({outage.cause})")
    for vm in result.scenario.cluster.vms:
        truth = downtime(result.world, vm.name, duration) - sum(
            (back if back is not None else duration) - down
            for down, back in truth_gaps(result, vm.name)
            if planned_gap(result, vm.name, (down, back)))
        computed = totals.get(vm.name, 0.0)
        if vm.name in uncertain:
            assert computed >= truth - TOLERANCE, f"{name} {vm.name}: under-reported"
        else:
            assert abs(computed - truth) <= TOLERANCE, (
                f"{name} {vm.name}: {computed:.3f} s down by the events, {truth:.3f} s by "
                f"ground truth")


# ---------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("name", SEED_SCENARIOS)
def test_seed_scenario_downtime_per_vm_matches_ground_truth(name: str) -> None:
    check_against_truth(name)
    for incident in incidents_of(name):
        for impact in incident.vms:
            # Every stop in a seed scenario is observed by a surviving host, except on a host
            # that went silent until its reset: from outside, a hang (guests frozen) and a
            # stalled agent (guests running on) look the same, so that stop is a range.
            assert not any(o.uncertain and "reset" not in o.cause for o in impact.outages), \
                f"{name}: every stop in a seed scenario is observed by a surviving host"


@pytest.mark.parametrize("name", LIBRARY)
def test_library_scenario_never_under_reports_downtime(name: str) -> None:
    """Everywhere: observed stops agree with ground truth within one heartbeat interval; a stop
    nobody observed (every host down at once) lies inside the interval the outage states."""
    check_against_truth(name)


def test_every_outage_in_the_library_belongs_to_an_incident() -> None:
    for name in LIBRARY:
        result = run(name)
        covered = {v.vm for i in incidents_of(name) for v in i.vms}
        for vm in result.scenario.cluster.vms:
            unplanned = [g for g in truth_gaps(result, vm.name)
                         if not planned_gap(result, vm.name, g)]
            if downtime(result.world, vm.name, result.scenario.duration) > TOLERANCE \
                    and unplanned:
                assert vm.name in covered, f"{name}: {vm.name} was down but is in no incident"


# ---------------------------------------------------------------------- seed 000
def test_000_carrier_flaps_open_an_early_warning_that_escalates() -> None:
    warning, failure = incidents_of("000-carrier-loss")
    assert (warning.id, warning.severity, warning.hosts) == ("INC-0001", "warning", ("atl2",))
    assert warning.opened_at == pytest.approx(60.067, abs=0.01)
    assert {e.kind for e in warning.events} >= {"link_down", "link_flapping", "host_degraded"}
    assert not warning.vms
    assert (warning.resolution, warning.superseded_by) == ("escalated", "INC-0002")
    assert warning.resolved_at == pytest.approx(failure.opened_at)
    assert "carrier flapping on eth2 (customer)" in warning.title


def test_000_carrier_loss_fenced_by_agent_restarted_and_verified() -> None:
    incident = by_id("000-carrier-loss", "INC-0002")
    assert (incident.severity, incident.resolution, incident.hosts) == (
        "critical", "verified", ("atl2",))
    assert [v.vm for v in incident.vms] == ["cust-a", "cust-b"]
    a, b = vm_of(incident, "cust-a"), vm_of(incident, "cust-b")
    assert (a.from_host, a.to_host, b.from_host, b.to_host) == ("atl2", "atl3", "atl2", "atl1")
    assert a.fence_path == b.fence_path == "fence agent"
    assert a.verification == b.verification == "verified"
    assert incident.resolved_at == max(a.verified_at or 0.0, b.verified_at or 0.0)
    # the VMs kept running, isolated, from the loss of carrier until the fence took the host
    assert a.outages[0].isolated_at == pytest.approx(200.067, abs=0.01)
    assert a.interrupted_s > 5.0 > a.downtime_s
    # the flaps of INC-0001 are root-cause evidence from before this incident
    before = [e for e in incident.evidence if e.before]
    assert [e.kind for e in before if e.kind.startswith("link")] == ["link_down", "link_flapping"]
    assert "lost carrier on eth0 (ring0), eth1 (ring1), eth2 (customer)" in incident.title


def test_000_proactive_evacuation_moves_vms_without_downtime() -> None:
    warning, isolated = incidents_of("000-carrier-flaps-proactive-evacuation")
    assert (warning.severity, warning.resolution) == ("warning", "verified")
    assert all(v.moved_live and v.downtime_s == 0.0 and v.verification == "verified"
               for v in warning.vms)
    assert {v.vm: v.to_host for v in warning.vms} == {"cust-a": "atl3", "cust-b": "atl1"}
    assert warning.superseded_by == isolated.id
    # the empty host is later isolated and never comes back: a host-only incident stays open
    assert (isolated.severity, isolated.resolution, isolated.vms) == ("major", None, ())


# ---------------------------------------------------------------------- seed 003
def test_003_unwritable_storage_after_reboot() -> None:
    (incident,) = incidents_of("003-reboot-storage-unwritable")
    assert (incident.severity, incident.resolution) == ("critical", "verified")
    for vm in ("vps1", "vps2"):
        impact = vm_of(incident, vm)
        assert (impact.from_host, impact.to_host) == ("kct09", "kct08")
        assert impact.fence_path == "clean shutdown"
        assert impact.downtime_s == pytest.approx(21.2, abs=TOLERANCE)
        assert impact.outages[0].exact
    storage = [e for e in incident.evidence if e.kind == "storage_unwritable"]
    assert storage and "permission denied (EACCES)" in storage[0].text
    assert incident.resolved_at == pytest.approx(61.2, abs=0.01)


def test_003_memory_errors_evacuate_then_host_loss_and_unfit_spare() -> None:
    warning, failure = incidents_of("003-ram-fault-host-replacement")
    assert warning.severity == "warning" and warning.superseded_by == failure.id
    assert [e.kind for e in warning.events][:2] == ["memory_errors", "host_degraded"]
    assert all(v.moved_live and v.verification == "verified" for v in warning.vms)
    assert (failure.severity, failure.hosts, failure.vms) == ("major", ("kct09",), ())
    assert any(e.kind == "host_fenced" and "by watchdog" in e.text for e in failure.events)
    assert any(e.kind == "storage_unwritable" for e in failure.events)
    # resolved only once the spare passes every check (storage writable again at 240 s)
    assert (failure.resolution, failure.resolved_at) == ("verified", 240.0)
    assert any(e.kind == "memory_errors" and e.before for e in failure.evidence)


# ---------------------------------------------------------------------- seeds 001, 002, 004
def test_001_monitoring_host_dies_watchdog_path() -> None:
    (incident,) = incidents_of("001-reboot-renamed-nics-monitoring")
    assert incident.hosts == ("hv1",)  # hv2 and hv3 only lost quorum for a second
    assert {v.vm: (v.to_host, v.fence_path) for v in incident.vms} == {
        "mon-a": ("hv3", "watchdog"), "ticketing": ("hv2", "watchdog")}
    renamed = [e for e in incident.evidence if e.kind == "nic_renamed"]
    assert len(renamed) == 3 and "was eth0" in renamed[0].text


def test_002_hung_node_recovered_on_the_watchdog_path() -> None:
    (incident,) = incidents_of("002-node-hangs")
    db = vm_of(incident, "db")
    assert (db.from_host, db.to_host, db.fence_path, db.verification) == (
        "nodeA", "nodeB", "watchdog", "verified")
    assert db.outages[0].down_at < incident.opened_at  # it stopped before anyone noticed


def test_004_split_site_self_fence_then_fence_agent() -> None:
    (incident,) = incidents_of("004-split-site-with-quorum-server")
    app = vm_of(incident, "app")
    assert app.outages[0].exact and "self-fence" in app.outages[0].cause
    assert (app.to_host, app.fence_path) == ("node1", "fence agent")
    assert incident.hosts == ("node0",)


def test_forced_starts_are_operator_actions_with_names() -> None:
    (incident,) = incidents_of("004-two-operators-force-start")
    assert "alice" in {a.operator for a in incident.operator_actions}
    (incident,) = incidents_of("004-force-start-with-quorum")
    kinds = {(a.kind, a.operator) for a in incident.operator_actions}
    assert ("force_start", "alice") in kinds and any(k == "force_start_refused" for k, _ in kinds)
    assert incident.severity == "major"  # the stop was the operator's, not a failure


def test_a_vm_left_stopped_keeps_its_incident_open() -> None:
    (incident,) = incidents_of("vm-crash-restart-then-relocate")
    assert incident.resolution is None and incident.waiting == ("app",)
    assert vm_of(incident, "app").still_down
    assert incident.title.startswith("app crashed 4 times")


def test_brief_heartbeat_losses_are_only_warnings() -> None:
    incidents = incidents_of("lossy-links-no-false-failover")
    assert incidents and all(i.severity == "warning" and i.resolution == "verified"
                             for i in incidents)


def test_planned_work_opens_no_incident() -> None:
    assert incidents_of("maintenance-drain-and-return") == ()
    assert incidents_of("shutdown-policy-migrate") == ()


def test_incidents_are_deterministic_and_numbered_in_order() -> None:
    result = run("000-carrier-loss")
    first = build_incidents(from_world(result.world), stream_end=300.0)
    again = build_incidents(from_world(result.world), stream_end=300.0)
    assert first == again
    assert [i.id for i in first] == [f"INC-{n:04d}" for n in range(1, len(first) + 1)]
    assert [i.opened_at for i in first] == sorted(i.opened_at for i in first)


# ---------------------------------------------------------------------- synthetic streams
def ev(t: float, kind: str, host: str | None = None, vm: str | None = None,
       by: str | None = None, **fields: Any) -> Event:
    """An event written by `by` (default: the host it is about), text rendered from fields."""
    return Event.of(t, kind, host, vm, by=by if by is not None else host, **fields)


def restart_stream(*, verified: bool | None) -> list[Event]:
    events = [ev(0.0, "vm_started", "h1", "app", token=2),
              ev(10.0, "heartbeat_lost", "h1", by="h2", links=("r0",), duration=0.8),
              ev(18.0, "host_fenced", "h1", by="h2", method="watchdog", detail="lease gone"),
              ev(18.2, "vm_started", "h2", "app", token=9)]
    if verified is True:
        events.append(ev(19.0, "vm_verified", "h2", "app", duration=0.8))
    elif verified is False:
        events.append(ev(19.0, "vm_verify_failed", "h2", "app", duration=120.0))
    events.append(ev(200.0, "host_joined", "h1", incarnation=2))
    return events


def test_restart_without_verification_is_resolved_without_verification() -> None:
    (incident,) = build_incidents(restart_stream(verified=None))
    assert incident.resolution == "unverified"
    assert incident.resolved_at == pytest.approx(18.2 + 60.0)
    app = vm_of(incident, "app")
    assert app.down_at == pytest.approx(9.2)  # last heard: 10.0 minus the 0.8 s timeout
    assert (app.verification, app.fence_path) == ("pending", "watchdog")
    # the stream ends before the 60 s: resolved (without verification) at its end
    (cut,) = build_incidents(restart_stream(verified=None)[:-1], stream_end=30.0)
    assert (cut.resolution, cut.resolved_at) == ("unverified", 30.0)


def test_failed_verification_keeps_the_incident_open() -> None:
    (incident,) = build_incidents(restart_stream(verified=False))
    assert incident.resolution is None and vm_of(incident, "app").verification == "failed"
    assert incident.severity == "critical"
    (ok,) = build_incidents(restart_stream(verified=True))
    assert (ok.resolution, ok.resolved_at) == ("verified", 19.0)


def test_vm_placement_from_outside_the_stream() -> None:
    """A journal that begins after the VMs started: the caller says where they ran."""
    events = restart_stream(verified=True)[1:]
    without = build_incidents(events)
    assert not without[0].vms  # no start, no recovery event: nothing to know app by
    (incident,) = build_incidents(events, vms_of_host_at=lambda h, t: ["app"] if h == "h1"
                                  else [])
    assert vm_of(incident, "app").downtime_s == pytest.approx(18.2 - 9.2)


def test_leader_recovery_event_names_the_lost_host() -> None:
    """Without placement, `vm_recovered` (cause host_lost, source h1) suffices."""
    events = restart_stream(verified=True)[1:]
    events.insert(2, ev(18.0, "vm_recovered", "h2", "app", by="h2", cause="host_lost",
                        source="h1", target="h2", reason="fenced"))
    (incident,) = build_incidents(events)
    app = vm_of(incident, "app")
    assert (app.from_host, app.to_host, app.fence_path) == ("h1", "h2", "watchdog")


def test_same_fact_from_several_observers_is_kept_once() -> None:
    lost = {"links": ("r0",), "duration": 0.8}
    events = [ev(1.0, "heartbeat_lost", "h1", by="h2", **lost),
              ev(1.3, "heartbeat_lost", "h1", by="h3", **lost),
              ev(1.4, "heartbeat_lost", "h2", by="h1", **lost),
              ev(5.0, "heartbeat_lost", "h1", by="h2", **lost)]
    merged = merge_duplicates(events)
    assert [(e.t, e.host) for e in merged] == [(1.0, "h1"), (1.4, "h2"), (5.0, "h1")]
    assert merged[0].also == (("h3", 1.3),) and merged[0].observers == ("h2", "h3")
    assert merged[0].last_t == 1.3


# ---------------------------------------------------------------------- real journal files
def write_journals(result: SimulationResult, directory: Path, epoch: float) -> None:
    """The simulated run as the hosts' own JSONL journals (what `FileJournal` writes)."""
    files: dict[str, list[str]] = {}
    seqs: dict[str, int] = {}
    for index, entry in enumerate(result.world.entries):
        event = from_world_entry(result, index)
        writer = event.by or "manager"
        seqs[writer] = seqs.get(writer, 0) + 1
        files.setdefault(writer, []).append(json.dumps({
            "v": 2, "t": round(epoch + entry.t, 3), "mono": round(entry.t, 3),
            "seq": seqs[writer], "by": event.by, "kind": entry.kind, "text": entry.text,
            **fact_fields(entry.fact)}))
    for writer, lines in files.items():
        (directory / f"journal-{writer}.jsonl").write_text("\n".join(lines) + "\n")


def from_world_entry(result: SimulationResult, index: int) -> Event:
    entry = result.world.entries[index]
    return Event(entry.t, entry.fact, entry.text, index)


def test_real_journal_files_give_the_same_incidents(tmp_path: Path) -> None:
    result = run("000-carrier-loss")
    epoch = 1_780_000_000.0
    write_journals(result, tmp_path, epoch)
    with (tmp_path / "journal-atl2.jsonl").open("a") as torn:  # a crash mid-line
        torn.write('{"t": 1780000300.0, "kind": "link_d')
    source = from_journal_files([tmp_path])
    writers = {e.fact.by or "manager" for e in result.world.entries}
    assert source.skipped == 1 and len(source.files) == len(writers) == 3
    real = build_incidents(source.events, stream_end=epoch + 300.0)
    simulated = incidents_of("000-carrier-loss")
    assert [(i.id, i.severity, i.resolution, i.hosts) for i in real] == [
        (i.id, i.severity, i.resolution, i.hosts) for i in simulated]
    for mine, theirs in zip(real, simulated, strict=True):
        assert [(v.vm, v.to_host, v.fence_path, v.verification) for v in mine.vms] == [
            (v.vm, v.to_host, v.fence_path, v.verification) for v in theirs.vms]
        for a, b in zip(mine.vms, theirs.vms, strict=True):
            assert a.downtime_s == pytest.approx(b.downtime_s, abs=0.01)


def test_journal_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        from_journal_files([tmp_path / "missing.jsonl"])
    with pytest.raises(ConfigError, match="no journal files"):
        from_journal_files([tmp_path])
    bad = tmp_path / "journal-h1.jsonl"
    bad.write_text('{"t": 1.0, "kind": "vm_started", "seq": 1}\n{"t": "soon", "kind": "x"}\n')
    with pytest.raises(ConfigError) as info:
        from_journal_files([bad])
    assert (info.value.file, info.value.line, info.value.path) == (str(bad), 2, "t")
    bad.write_text('{"kind": "vm_started"}\n')
    with pytest.raises(ConfigError) as info:
        from_journal_files([bad])
    assert info.value.path == "t"
    other = tmp_path / "notes.txt"
    other.write_text("hello\nworld\n")
    with pytest.raises(ConfigError, match="not a ringfence journal"):
        from_journal_files([other])


def test_journals_merge_by_time_writer_and_sequence(tmp_path: Path) -> None:
    (tmp_path / "journal-a.jsonl").write_text(
        '{"t": 5.0, "seq": 2, "by": "a", "kind": "vm_started", "host": "a", "vm": "v", '
        '"text": "v started on a"}\n'
        '{"t": 1.0, "seq": 1, "by": "a", "kind": "quorum_gained", "host": "a", "vm": null, '
        '"text": "a joined with incarnation 1"}\n')
    (tmp_path / "journal-b.jsonl").write_text(
        '{"t": 5.0, "seq": 1, "by": "b", "kind": "quorum_gained", "host": "b", "vm": null, '
        '"text": "b joined with incarnation 1"}\n')
    events = from_journal_files([tmp_path]).events
    assert [(e.t, e.by, e.seq) for e in events] == [(1.0, "a", 1), (5.0, "a", 2), (5.0, "b", 1)]


# ---------------------------------------------------------------------- planned work
def test_an_operator_stop_and_a_drain_are_planned_work_not_incidents() -> None:
    """Issue 12: `vm stop vm2` became a critical incident and the public status page said the
    hosts stopped responding. Planned work stays in the journal, never opens an incident."""
    from ringfence.journal.incidents import final_host_states
    from ringfence.journal.status_page import overall_state

    events = [ev(0.0, "vm_started", "h2", "vm2", token=3),
              ev(0.0, "vm_started", "h1", "vm1", token=4),
              ev(5.0, "vm_stop_requested", None, "vm2", by="h1", operator="alice",
                 request="r-0123456789ab", planned=True),
              ev(5.4, "vm_stopped", "h2", "vm2", token=3, cause="operator", operator="alice",
                 request="r-0123456789ab", planned=True),
              ev(6.0, "maintenance_on", "h1", by="h3", operator="bob", planned=True),
              ev(6.5, "vm_migrating", "h1", "vm1", by="h3", source="h1", target="h3",
                 cause="maintenance", planned=True),
              ev(9.0, "vm_migrated", "h3", "vm1", by="h1", source="h1", target="h3",
                 cause="maintenance", planned=True),
              ev(30.0, "host_shutdown", "h2", reason="shutdown", count=0, planned=True),
              ev(30.8, "heartbeat_lost", "h2", by="h3", links=("r0",), duration=0.8)]
    incidents = build_incidents(events, stream_end=60.0)
    assert incidents == []
    assert overall_state(incidents, final_host_states(events)) != "service disruption"
