"""The `monitors:` section and the routes' `self_test`: fields, bounds, references, and
errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.config import ClusterConfig, load_cluster
from ringfence.errors import ConfigError

BASE = """\
networks: [{name: ring0, role: heartbeat}]
hosts: [{name: a, cpus: 4, memory: 4GiB}]
vms: [{name: mon-a, cpus: 1, memory: 1GiB, host: a}]
alerts:
  - {kind: alertmanager, name: am, url: 'http://mon-a:9093'}
  - {kind: webhook, name: pager, url: 'https://pager.example/hook'}
"""


def load(tmp_path: Path, text: str) -> ClusterConfig:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + text)
    return load_cluster(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_monitors_of_each_kind(tmp_path: Path) -> None:
    config = load(tmp_path, "monitors:\n"
                            "  - {name: am, http: 'http://mon-a:9093/-/healthy', every: 30s}\n"
                            "  - {name: smtp, tcp: 'mx.example:25', failures: 3}\n"
                            "  - {name: mon-vm, vm: mon-a, routes: [pager], severity: warning}\n")
    am, smtp, vm = config.monitors
    assert (am.method, am.target, am.every, am.timeout) == (
        "http", "http://mon-a:9093/-/healthy", 30.0, 5.0)
    assert (smtp.method, smtp.failures, smtp.every) == ("tcp", 3, 60.0)
    assert (vm.method, vm.routes, vm.severity) == ("vm", ["pager"], "warning")


@pytest.mark.parametrize(("text", "words"), [
    ("[{name: x}]", "monitors[0]: a monitor needs exactly one of http, tcp or vm"),
    ("[{name: x, http: 'http://a', tcp: 'b:1'}]", "(it has http and tcp)"),
    ("[{name: x, tcp: 'nohost'}]", "monitors[0].tcp"),
    ("[{name: x, http: 'ftp://a'}]", "monitors[0].http"),
    ("[{name: x, vm: mon-b}]", "monitors[0].vm: unknown VM 'mon-b'"),
    ("[{name: x, vm: mon-a, routes: [pagr]}]",
     "monitors[0].routes[0]: unknown alert route 'pagr'"),
    ("[{name: x, vm: mon-a, every: 1s}]", "monitors[0].every"),
    ("[{name: x, vm: mon-a, every: 10s, timeout: 10s}]", "must be less than every"),
    ("[{name: x, vm: mon-a, failures: 11}]", "monitors[0].failures"),
    ("[{name: x, vm: mon-a}, {name: x, tcp: 'a:1'}]", "monitors[1].name: duplicate monitor"),
    ("[{name: x, vm: mon-a, colour: red}]", "monitors[0].colour"),
])
def test_monitor_mistakes_name_the_field(tmp_path: Path, text: str, words: str) -> None:
    assert words in error(tmp_path, f"monitors: {text}\n")


def test_route_self_tests(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE.replace("url: 'https://pager.example/hook'}",
                                 "url: 'https://pager.example/hook', "
                                 "self_test: {every: 10m, send: info}}"))
    pager = load_cluster(path).alerts[1]
    assert pager.self_test is not None and pager.self_test.every == 600.0
    assert pager.self_test.send == "info"
    for route, words in [
        ("{kind: webhook, url: 'https://x/y', min_severity: warning, "
         "self_test: {send: info}}", "send info needs min_severity info"),
        ("{kind: deadman, url: 'https://x/y', self_test: {}}", "has no receiver to test"),
        ("{kind: webhook, url: 'https://x/y', self_test: {every: 5s}}", "self_test.every"),
        ("{kind: webhook, name: am, url: 'https://x/y'}", "alerts[2].name: duplicate route"),
    ]:
        path.write_text(BASE + f"  - {route}\n")
        with pytest.raises(ConfigError) as caught:
            load_cluster(path)
        assert words in str(caught.value), str(caught.value)


def test_a_monitor_needs_a_route_that_sends(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE.split("alerts:")[0] + "alerts: [{kind: log}]\n"
                    "monitors: [{name: x, vm: mon-a}]\n")
    with pytest.raises(ConfigError) as caught:
        load_cluster(path)
    assert "monitors[0]: no alert route can carry" in str(caught.value)
