"""Scenario files: the contract's example loads; every class of mistake is named precisely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ringfence.errors import ConfigError
from ringfence.sim.scenario import load_scenario

CONTRACT_EXAMPLE = """\
name: split-site-with-quorum-server        # required
description: everRun SplitSite example 2    # optional
seed: 1                                     # optional, default 0; --seed overrides
duration: 300s                              # simulated length of the run
cluster:                                    # the same schema as a real cluster file
  timing: {heartbeat_interval: 200ms, host_lease_ttl: 6s, watchdog_timeout: 4s}
  networks:
    - {name: alink1, role: heartbeat}
    - {name: alink2, role: heartbeat}
    - {name: business, role: vm}
  hosts:
    - {name: node0, cpus: 16, memory: 64GiB, networks: [alink1, alink2, business]}
    - {name: node1, cpus: 16, memory: 64GiB, networks: [alink1, alink2, business]}
  witnesses:                                # extra store members that run no VMs
    - {name: quorum, networks: [business]}
  store: {members: [node0, node1, quorum]}  # store members; a single member means embedded
  fencing: {node0: {agent: power}, node1: {agent: power}}   # optional power fence agents
  vms:
    - {name: app, cpus: 2, memory: 4GiB, host: node0, priority: 100}
events:
  - {at: 30s, do: partition, groups: [[node0], [node1, quorum]]}
  - {at: 120s, do: heal}
expect:
  - {vm: app, running_on: node1, at: 60s}
  - {vm: app, not_running_on: node0, from: 45s, to: 120s}
  - {host: node0, state: fenced, at: 60s}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def with_events(*events: str) -> str:
    head = CONTRACT_EXAMPLE.split("events:\n")[0]
    return head + "events:\n" + "".join(f"  - {event}\n" for event in events)


def with_expect(*expectations: str) -> str:
    head = CONTRACT_EXAMPLE.split("expect:\n")[0]
    return head + "expect:\n" + "".join(f"  - {item}\n" for item in expectations)


def load_error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return str(caught.value), path


def assert_problem(rendered: str, path: Path, line: int, field: str, *words: str) -> None:
    prefix = f"{path}:{line}: {field}: "
    rows = [row for row in rendered.splitlines() if row.startswith(prefix)]
    assert rows, f"no problem starting with {prefix!r} in:\n{rendered}"
    for word in words:
        assert any(word in row for row in rows), f"{word!r} not in {rows}"


def test_contract_example_loads(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, CONTRACT_EXAMPLE))
    assert scenario.name == "split-site-with-quorum-server"
    assert (scenario.seed, scenario.duration) == (1, 300.0)
    assert scenario.cluster.store_members() == ["node0", "node1", "quorum"]
    assert [event.do for event in scenario.events] == ["partition", "heal"]
    assert scenario.events[0].groups == [["node0"], ["node1", "quorum"]]
    assert [item.kind for item in scenario.expect] == ["running_on", "not_running_on", "host_state"]
    assert scenario.expect[1].from_ == 45.0
    assert scenario.expect[0].as_written() == {"vm": "app", "running_on": "node1", "at": "60s"}
    assert scenario.expect[1].as_written() == {
        "vm": "app",
        "not_running_on": "node0",
        "from": "45s",
        "to": "120s",
    }
    assert scenario.sim.boot_time == 20.0


def test_every_event_kind_and_expectation_shape_loads(tmp_path: Path) -> None:
    text = (
        with_events(
            "{at: 1s, do: power_off, host: node0}",
            "{at: 2s, do: power_on, host: node0}",
            "{at: 3s, do: reboot, host: node0}",
            "{at: 4s, do: shutdown, host: node0}",
            "{at: 5s, do: hang, host: node0, watchdog: frozen}",
            "{at: 6s, do: resume, host: node0}",
            "{at: 7s, do: link_down, host: node0, network: all}",
            "{at: 8s, do: link_up, host: node0, network: alink1}",
            "{at: 9s, do: link_flap, host: node0, network: alink2, count: 5}",
            "{at: 10s, do: partition, groups: [[node0], [node1]], networks: [alink1]}",
            "{at: 11s, do: heal, networks: [alink1]}",
            "{at: 12s, do: witness_down, witness: quorum}",
            "{at: 13s, do: witness_up, witness: quorum}",
            "{at: 14s, do: rename_nics, host: node1}",
            "{at: 15s, do: storage_fail, host: node1, datastore: rbd}",
            "{at: 16s, do: storage_ok, host: node1}",
            "{at: 17s, do: memory_errors, host: node1, count: 3}",
            "{at: 18s, do: vm_crash, vm: app}",
            "{at: 19s, do: maintenance, host: node1, on: true}",
            "{at: 20s, do: migrate, vm: app, to: node1}",
            "{at: 21s, do: force_start, vm: app, host: node1, operator: al, confirm_down: [node0]}",
        )
        + "expect:\n"
        + "".join(
            f"  - {item}\n"
            for item in (
                "{vm: app, running_on: any, at: 60s}",
                "{vm: app, not_running_on: any, from: 1s, to: 2s}",
                "{vm: app, max_downtime: 15s}",
                "{host: node0, state: waiting_for_quorum, at: 5s}",
                "{event: host_fenced, host: node0, from: 30s, to: 60s}",
                "{no_event: self_fence, vm: app}",
                "{alert: jeopardy, by: 90s}",
            )
        )
    )
    scenario = load_scenario(write(tmp_path, text))
    assert len(scenario.events) == 21
    assert scenario.events[18].on is True
    assert [item.kind for item in scenario.expect] == [
        "running_on",
        "not_running_on",
        "max_downtime",
        "host_state",
        "event",
        "no_event",
        "alert",
    ]


def test_bad_event_kind(tmp_path: Path) -> None:
    text = with_events("{at: 30s, do: explode, host: node0}")
    rendered, path = load_error(tmp_path, text)
    assert_problem(
        rendered,
        path,
        line_of(text, "explode"),
        "events[0].do",
        "'explode' is not allowed",
        "power_off",
        "force_start",
    )


def test_event_missing_a_field(tmp_path: Path) -> None:
    text = with_events("{at: 30s, do: heal}", "{at: 31s, do: link_down, host: node0}")
    rendered, path = load_error(tmp_path, text)
    assert_problem(
        rendered,
        path,
        line_of(text, "do: link_down"),
        "events[1].network",
        "do: link_down needs 'network'",
        "host, network",
    )


def test_event_field_that_does_not_belong(tmp_path: Path) -> None:
    text = with_events("{at: 30s, do: power_off, host: node0, vm: app}")
    rendered, path = load_error(tmp_path, text)
    assert_problem(
        rendered,
        path,
        line_of(text, "do: power_off"),
        "events[0].vm",
        "'vm' does not belong to do: power_off",
        "it takes: host",
    )


def test_event_references_are_checked(tmp_path: Path) -> None:
    text = with_events(
        "{at: 30s, do: power_off, host: node7}",
        "{at: 31s, do: witness_down, witness: node0}",
        "{at: 32s,\n     do: partition, groups: [[node0, quorum], [node1, node0]]}",
        "{at: 400s, do: vm_crash, vm: app}",
    )
    rendered, path = load_error(tmp_path, text)
    assert_problem(
        rendered,
        path,
        line_of(text, "node7"),
        "events[0].host",
        "unknown host 'node7'; known hosts: node0, node1",
    )
    assert_problem(
        rendered, path, line_of(text, "witness: node0"), "events[1].witness", "is a host"
    )
    assert_problem(
        rendered,
        path,
        line_of(text, "[node1, node0]"),
        "events[2].groups[1][1]",
        "already in groups[0]",
    )
    assert_problem(
        rendered,
        path,
        line_of(text, "400s"),
        "events[3].at",
        "after the end of the run (duration: 5m)",
    )


def test_expectation_bad_shape(tmp_path: Path) -> None:
    text = with_expect(
        "{vm: app, running_on: node1, state: online, at: 60s}",
        "{vm: app}",
        "{vm: app, running_on: node1}",
        "{vm: app, max_downtime: 5s, at: 3s}",
    )
    rendered, path = load_error(tmp_path, text)
    assert_problem(
        rendered,
        path,
        line_of(text, "state: online"),
        "expect[0]",
        "mixes running_on and state",
        "{vm, running_on, at}",
    )
    assert_problem(
        rendered,
        path,
        line_of(text, "{vm: app}"),
        "expect[1]",
        "cannot tell what to check",
        "{alert, optional by, optional route, optional delivered}",
    )
    assert_problem(
        rendered, path, line_of(text, "{vm: app, running_on: node1}"), "expect[2].at", "needs 'at'"
    )
    assert_problem(
        rendered,
        path,
        line_of(text, "max_downtime"),
        "expect[3].at",
        "does not belong to a max_downtime expectation",
    )


def test_expectation_references_and_states(tmp_path: Path) -> None:
    text = with_expect(
        "{vm: ap, running_on: node1, at: 60s}",
        "{host: node0, state: dead, at: 60s}",
        "{no_event: host_fence}",
    )
    rendered, path = load_error(tmp_path, text)
    assert_problem(
        rendered,
        path,
        line_of(text, "state: dead"),
        "expect[1].state",
        "online",
        "waiting_for_quorum",
    )
    assert_problem(
        rendered,
        path,
        line_of(text, "host_fence}"),
        "expect[2].no_event",
        "did you mean 'host_fenced'?",
    )
    text = with_expect("{vm: ap, running_on: quorum, at: 60s}")
    rendered, path = load_error(tmp_path, text)
    assert_problem(rendered, path, line_of(text, "vm: ap"), "expect[0].vm", "unknown VM 'ap'")
    assert_problem(
        rendered,
        path,
        line_of(text, "vm: ap"),
        "expect[0].running_on",
        "unknown host 'quorum'",
        "or any",
    )


def test_cluster_errors_carry_the_cluster_prefix(tmp_path: Path) -> None:
    text = CONTRACT_EXAMPLE.replace(
        "{name: node1, cpus: 16, memory: 64GiB,", "{name: node1, cpus: 16, memory: lots,"
    )
    rendered, path = load_error(tmp_path, text)
    assert_problem(
        rendered, path, line_of(text, "memory: lots"), "cluster.hosts[1].memory", "a size such as"
    )


def test_missing_name_and_unknown_top_level_field(tmp_path: Path) -> None:
    text = CONTRACT_EXAMPLE.replace("name: split-site-with-quorum-server", "nmae: x")
    rendered, path = load_error(tmp_path, text)
    assert f"{path}:1: nmae: unknown field 'nmae'; did you mean 'name'?" in rendered
    assert f"{path}:1: name: missing required field 'name'" in rendered


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    rendered, path = load_error(tmp_path, "name: x\nevents:\n  - {at: 1s, do: heal\n")
    assert rendered.startswith(f"{path}:3: invalid YAML: while parsing a flow mapping")
    with pytest.raises(ConfigError, match="file not found"):
        load_scenario(tmp_path / "absent.yaml")
