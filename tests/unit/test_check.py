"""`ringfence check`: single-failure analysis of a cluster file, its findings and its output."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ringfence.check import (
    CheckReport,
    FailureResult,
    Finding,
    analyse,
    load_any,
    render_text,
    run_check,
    to_json,
)
from ringfence.errors import ConfigError

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

ROOMY = """\
name: roomy
networks:
  - {name: ring0, role: heartbeat}
  - {name: ring1, role: heartbeat}
  - {name: biz, role: vm}
hosts:
  - {name: hv1, cpus: 32, memory: 128GiB}
  - {name: hv2, cpus: 32, memory: 128GiB}
  - {name: hv3, cpus: 32, memory: 128GiB}
fencing:
  hv1: {agent: fence_ipmilan}
  hv2: {agent: fence_ipmilan}
  hv3: {agent: fence_ipmilan}
groups:
  - {name: monitoring, vms: [mon-a, mon-b], rule: anti_affinity}
vms:
  - {name: erp, cpus: 8, memory: 32GiB, host: hv1, priority: 100}
  - {name: web, cpus: 4, memory: 8GiB, host: hv2}
  - {name: mon-a, cpus: 1, memory: 2GiB, host: hv1}
  - {name: mon-b, cpus: 1, memory: 2GiB, host: hv3}
  - {name: spare, cpus: 2, memory: 4GiB}
alerts:
  - {kind: webhook, url: "https://ops.example/hook"}
  - {kind: deadman, url: "https://hc.example/ping/abc", every: 1m}
"""


def write(tmp_path: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def check(tmp_path: Path, text: str) -> CheckReport:
    return analyse(load_any(write(tmp_path, text)))


def failure(report: CheckReport, name: str) -> FailureResult:
    matches = [r for r in report.failures if r.failure == name]
    assert len(matches) == 1, [r.failure for r in report.failures]
    return matches[0]


def findings(report: CheckReport, kind: str, failure: str | None = "*") -> list[Finding]:
    return [f for f in report.findings if f.kind == kind and failure in ("*", f.failure)]


# ------------------------------------------------------------------------------ single failures


def test_a_roomy_three_host_cluster_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    report = check(tmp_path, ROOMY)
    assert report.ok and report.exit_code == 0
    assert report.errors == ()
    names = [r.failure for r in report.failures]
    assert names == [
        "host hv1", "host hv2", "host hv3",
        "network biz", "network ring0", "network ring1",
        "store member hv1", "store member hv2", "store member hv3",
    ]
    hv1 = failure(report, "host hv1")
    assert hv1.lost_host_names == ("hv1",)
    assert hv1.quorum
    assert hv1.vms_without_place == () and hv1.groups_broken == ()
    moved = dict(hv1.moved)
    assert set(moved) >= {"erp", "mon-a"}
    assert moved["mon-a"] != "hv3"  # kept apart from mon-b
    assert dict(report.placement)["spare"] in ("hv1", "hv2", "hv3")

    assert run_check(str(write(tmp_path, ROOMY)), as_json=False) == 0
    out = capsys.readouterr().out
    assert "host hv1" in out and "Result: OK" in out


def test_a_big_vm_that_fits_only_on_one_host_fails_that_host(tmp_path: Path) -> None:
    report = check(tmp_path, """\
        networks:
          - {name: ring0, role: heartbeat}
          - {name: ring1, role: heartbeat}
        hosts:
          - {name: big1, cpus: 64, memory: 512GiB}
          - {name: small1, cpus: 16, memory: 64GiB}
          - {name: small2, cpus: 16, memory: 64GiB}
        vms:
          - {name: oracle, cpus: 32, memory: 256GiB, host: big1, priority: 100}
          - {name: web, cpus: 2, memory: 4GiB, host: small1}
        """)
    assert report.exit_code == 1
    big1 = failure(report, "host big1")
    assert [u.vm for u in big1.vms_without_place] == ["oracle"]
    assert "needs 32 CPUs" in big1.vms_without_place[0].reason
    assert failure(report, "host small1").vms_without_place == ()
    [error] = report.errors
    assert error.kind == "vm_without_place"
    assert error.failure == "host big1"
    assert "oracle" in error.text
    assert "host big1" in render_text(report)


def test_two_monitors_on_two_hosts_break_when_one_host_fails(tmp_path: Path) -> None:
    report = check(tmp_path, """\
        networks:
          - {name: ring0, role: heartbeat}
          - {name: ring1, role: heartbeat}
        hosts:
          - {name: hv1, cpus: 16, memory: 64GiB}
          - {name: hv2, cpus: 16, memory: 64GiB}
        witnesses:
          - {name: q1}
        groups:
          - {name: monitoring, vms: [mon-a, mon-b], rule: anti_affinity}
        vms:
          - {name: mon-a, cpus: 1, memory: 2GiB, host: hv1}
          - {name: mon-b, cpus: 1, memory: 2GiB, host: hv2}
        """)
    assert report.exit_code == 1
    hv1 = failure(report, "host hv1")
    assert hv1.quorum
    assert hv1.groups_broken == ("monitoring",)
    assert [u.vm for u in hv1.vms_without_place] == ["mon-a"]
    assert "excluded by anti-affinity" in hv1.vms_without_place[0].reason
    broken = findings(report, "group_broken", "host hv1")
    assert len(broken) == 1 and broken[0].severity == "error"
    assert "2 distinct hosts" in broken[0].text
    assert failure(report, "host hv2").groups_broken == ("monitoring",)


def test_members_pinned_to_one_host_break_their_group_before_any_failure(tmp_path: Path
                                                                         ) -> None:
    report = check(tmp_path, ROOMY.replace("host: hv3}", "host: hv1}"))
    [error] = [f for f in report.errors if f.failure is None]
    assert error.kind == "group_broken" and "mon-a, mon-b on hv1" in error.text


def test_a_vm_that_fits_nowhere_is_an_error_without_any_failure(tmp_path: Path) -> None:
    report = check(tmp_path, ROOMY.replace(
        "{name: spare, cpus: 2, memory: 4GiB}", "{name: spare, cpus: 40, memory: 4GiB}"))
    assert report.exit_code == 1
    [error] = [f for f in report.errors if f.failure is None]
    assert error.kind == "vm_without_place" and "spare" in error.text
    assert dict(report.placement)["spare"] is None


def test_two_hosts_without_witness_warn_about_splits(tmp_path: Path) -> None:
    report = check(tmp_path, """\
        networks:
          - {name: alink1, role: heartbeat}
          - {name: alink2, role: heartbeat}
        hosts:
          - {name: node0, cpus: 16, memory: 64GiB}
          - {name: node1, cpus: 16, memory: 64GiB}
        vms:
          - {name: app, cpus: 2, memory: 4GiB, host: node0}
        """)
    [warning] = findings(report, "two_node_no_witness")
    assert warning.severity == "warning" and warning.failure is None
    assert "split" in warning.text and "witness" in warning.text
    # and, with two store members, losing either host loses the store's majority
    assert not failure(report, "host node1").quorum
    assert findings(report, "quorum_lost", "host node1")


def test_store_quorum_is_lost_with_the_network_that_carries_two_of_three_members(
    tmp_path: Path,
) -> None:
    report = check(tmp_path, """\
        networks:
          - {name: ring0, role: heartbeat}
          - {name: ring1, role: heartbeat}
          - {name: biz, role: vm}
        hosts:
          - {name: hv1, cpus: 16, memory: 64GiB}
          - {name: hv2, cpus: 16, memory: 64GiB, networks: [ring0, ring1]}
          - {name: hv3, cpus: 16, memory: 64GiB, networks: [ring0, ring1]}
        witnesses:
          - {name: q1, networks: [biz]}
          - {name: q2, networks: [biz]}
        store: {members: [hv1, q1, q2]}
        vms:
          - {name: app, cpus: 2, memory: 4GiB, host: hv2}
        """)
    biz = failure(report, "network biz")
    assert not biz.quorum
    assert biz.lost_host_names == ("hv1", "hv2", "hv3")
    assert [u.vm for u in biz.vms_without_place] == ["app"]
    [error] = findings(report, "quorum_lost", "network biz")
    assert error.severity == "error" and "without biz" in error.text
    assert failure(report, "network ring0").quorum
    assert failure(report, "witness q1").quorum  # hv1 and q2 are still a majority
    assert report.exit_code == 1


def test_a_host_left_without_heartbeat_network_counts_as_lost(tmp_path: Path) -> None:
    report = check(tmp_path, """\
        networks:
          - {name: ring0, role: heartbeat}
          - {name: ring1, role: heartbeat}
        hosts:
          - {name: hv1, cpus: 16, memory: 64GiB}
          - {name: hv2, cpus: 16, memory: 64GiB}
          - {name: hv3, cpus: 16, memory: 64GiB, networks: [ring0]}
        vms:
          - {name: app, cpus: 2, memory: 4GiB, host: hv3}
        """)
    ring0 = failure(report, "network ring0")
    assert ring0.lost_host_names == ("hv3",)
    assert ring0.moved == (("app", "hv1"),)
    [lost] = findings(report, "host_lost", "network ring0")
    assert "hv3 is left on no heartbeat network" in lost.text
    [single] = findings(report, "heartbeat_networks")
    assert "hv3" in single.text
    assert report.ok


def test_monitors_that_go_down_together_take_the_alert_path(tmp_path: Path) -> None:
    report = check(tmp_path, """\
        networks:
          - {name: ring0, role: heartbeat}
          - {name: ring1, role: heartbeat}
        hosts:
          - {name: hv1, cpus: 16, memory: 64GiB, networks: [ring0]}
          - {name: hv2, cpus: 16, memory: 64GiB, networks: [ring0]}
          - {name: hv3, cpus: 16, memory: 64GiB}
          - {name: hv4, cpus: 16, memory: 64GiB}
        witnesses:
          - {name: q1, networks: [ring1]}
        groups:
          - {name: monitoring, vms: [mon-a, mon-b], rule: anti_affinity}
        vms:
          - {name: mon-a, cpus: 1, memory: 2GiB, host: hv1}
          - {name: mon-b, cpus: 1, memory: 2GiB, host: hv2}
        alerts:
          - {kind: email, smtp: "smtp.example:587", to: [oncall@example.org]}
        """)
    ring0 = failure(report, "network ring0")
    assert ring0.quorum  # hv3, hv4 and q1: three of five store members
    assert ring0.lost_host_names == ("hv1", "hv2")
    assert ring0.groups_down == ("monitoring",)
    assert ring0.groups_broken == ()  # hv3 and hv4 keep them apart
    [path] = findings(report, "alert_path", "network ring0")
    assert path.severity == "warning"
    assert "monitoring" in path.text and "no deadman route" in path.text
    assert findings(report, "no_deadman")


def test_an_alert_route_through_a_vm_of_the_failed_host_is_reported(tmp_path: Path) -> None:
    text = ROOMY.replace('url: "https://ops.example/hook"', 'url: "https://web.example/hook"')
    report = check(tmp_path, text)
    [path] = findings(report, "alert_path", "host hv2")
    assert "goes through VM web" in path.text and "runs again on" in path.text
    assert findings(report, "alert_path", "host hv1") == []


def test_no_alert_routes_is_a_warning(tmp_path: Path) -> None:
    text = ROOMY.split("alerts:")[0]
    report = check(tmp_path, text)
    [warning] = findings(report, "no_alerts")
    assert warning.severity == "warning"
    assert report.ok


# ------------------------------------------------------------------------------ static checks


def test_timing_findings(tmp_path: Path) -> None:
    text = ROOMY.replace(
        "name: roomy\n",
        "name: roomy\ntiming: {heartbeat_interval: 200ms, heartbeat_timeout: 500ms, "
        "host_lease_ttl: 6s, watchdog_timeout: 5500ms, safety_margin: 1s}\n",
    )
    report = check(tmp_path, text)
    [heartbeat] = findings(report, "timing_heartbeat")
    assert heartbeat.severity == "warning" and "600ms" in heartbeat.text
    [headroom] = findings(report, "timing_headroom")
    # Reset by 5s + 5.5s = 10.5s after the last renewal; moved no earlier than 6 + 5.5 + 0.5.
    assert headroom.severity == "info" and "10.5s" in headroom.text and "12s" in headroom.text
    assert "1.5s of margin" in headroom.text
    [margin] = findings(report, "timing_watchdog")
    assert margin.severity == "info" and "500ms shorter" in margin.text
    assert report.ok  # timing warnings do not fail the check


def test_etcd_timers_are_weighed_against_the_lease_and_failover_is_said_per_victim(
        tmp_path: Path) -> None:
    etcd = ROOMY.replace("alerts:\n", "store: {kind: etcd, endpoints: [\"http://10.0.0.1:2379\"], "
                                       "election_timeout: 3s}\nalerts:\n")
    report = check(tmp_path, etcd)
    # Two rounds of a 3 s election and a renewal every 2 s outlast the 5 s of freshness.
    [slow] = findings(report, "etcd_election_vs_lease")
    assert slow.severity == "warning" and "6s" in slow.text and "above 9s" in slow.text
    [victims] = findings(report, "failover_by_victim")
    assert "3s-6s" in victims.text and "16.5s" in victims.text  # 6 + 6 + 4 + 0.5
    assert report.ok
    lan = etcd.replace("election_timeout: 3s", "election_timeout: 500ms, "
                                               "heartbeat_interval: 50ms")
    report = check(tmp_path, lan)
    assert not findings(report, "etcd_election_vs_lease")
    assert not findings(report, "etcd_timers")
    assert "500ms-1s" in findings(report, "failover_by_victim")[0].text
    twitchy = etcd.replace("election_timeout: 3s", "election_timeout: 300ms, "
                                                   "heartbeat_interval: 100ms")
    assert findings(check(tmp_path, twitchy), "etcd_timers")
    # The embedded store has no election: nothing is said.
    assert not findings(check(tmp_path, ROOMY), "failover_by_victim")


def test_hosts_without_fence_agent_get_the_watchdog_recovery_time(tmp_path: Path) -> None:
    report = check(tmp_path, ROOMY.replace("  hv3: {agent: fence_ipmilan}\n", ""))
    [info] = findings(report, "no_fence_agent")
    assert info.severity == "info"
    assert "hv3" in info.text and "hv1" not in info.text and "10.5s" in info.text


def test_even_store_members_and_a_single_heartbeat_network_warn(tmp_path: Path) -> None:
    report = check(tmp_path, """\
        networks:
          - {name: ring0, role: heartbeat}
        hosts:
          - {name: hv1, cpus: 16, memory: 64GiB}
          - {name: hv2, cpus: 16, memory: 64GiB}
          - {name: hv3, cpus: 16, memory: 64GiB}
          - {name: hv4, cpus: 16, memory: 64GiB}
        vms:
          - {name: app, cpus: 2, memory: 4GiB, host: hv1}
        """)
    assert findings(report, "even_store_members")[0].severity == "warning"
    assert "seed 002" in findings(report, "heartbeat_networks")[0].text
    ring0 = failure(report, "network ring0")
    assert len(ring0.lost_host_names) == 4
    assert findings(report, "cluster_lost", "network ring0")[0].severity == "error"


def test_host_failures_to_tolerate_two_is_checked_by_combination(tmp_path: Path) -> None:
    report = check(tmp_path, ROOMY.replace(
        "alerts:", "policy: {host_failures_to_tolerate: 2}\nalerts:"))
    [policy] = findings(report, "policy")
    assert policy.severity == "warning"
    assert "not met for 3 of 3 combinations" in policy.text
    assert "the store loses quorum" in policy.text
    assert report.ok


# ------------------------------------------------------------------------------------- output


def test_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, ROOMY.replace("host: hv3}", "host: hv1}"))
    assert run_check(str(path), as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["cluster"] == "roomy"
    assert data["ok"] is False
    assert data == to_json(analyse(load_any(path)))
    for finding in data["findings"]:
        assert set(finding) == {"severity", "kind", "failure", "text"}
        assert finding["severity"] in ("error", "warning", "info")
    assert data["findings"][0]["severity"] == "error"
    entry = data["failures"][0]
    assert entry["failure"] == "host hv1"
    assert {"failure", "lost_hosts", "vms_without_place", "groups_broken", "quorum"} <= set(entry)
    assert entry["lost_hosts"] == ["hv1"]
    assert isinstance(entry["quorum"], bool)
    assert isinstance(entry["vms_without_place"], list)


def test_output_is_deterministic_and_independent_of_file_order(tmp_path: Path) -> None:
    first = check(tmp_path, ROOMY)
    lines = ROOMY.splitlines(keepends=True)
    hosts = [i for i, line in enumerate(lines) if line.startswith("  - {name: hv")]
    swapped = list(lines)
    for i, j in zip(hosts, reversed(hosts), strict=True):
        swapped[i] = lines[j]
    second = analyse(load_any(write(tmp_path, "".join(swapped), "swapped.yaml")))
    assert render_text(first) == render_text(check(tmp_path, ROOMY))
    assert [r.failure for r in first.failures] == [r.failure for r in second.failures]
    assert to_json(first)["failures"] == to_json(second)["failures"]


def test_run_check_reads_a_scenario_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIOS / "004-split-site-with-quorum-server.yaml"
    assert run_check(str(path), as_json=False) == 0
    out = capsys.readouterr().out
    assert "host node0" in out and "witness quorum" in out
    assert run_check(str(SCENARIOS / "004-split-site-no-witness.yaml"), as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert any(f["kind"] == "two_node_no_witness" for f in data["findings"])


def test_invalid_files_raise_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, ROOMY.replace("cpus: 32, memory: 128GiB}\n", "cpus: 0, memory: 1}\n",
                                         1))
    with pytest.raises(ConfigError) as caught:
        run_check(str(path), as_json=False)
    assert caught.value.file == str(path)
    assert "hosts[0].cpus" in str(caught.value)
    with pytest.raises(ConfigError):
        run_check(str(tmp_path / "missing.yaml"), as_json=True)
