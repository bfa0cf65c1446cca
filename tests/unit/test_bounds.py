"""Every field of the cluster and scenario files has sane bounds, and hostile YAML (alias bombs,
absurd nesting, huge files) is refused with a message naming the file, the line and the field.

Each case sets one field of an otherwise valid file to an absurd value and expects a
`ConfigError` whose problem names that field's path and a line of the file.
"""

from __future__ import annotations

import contextlib
import copy
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml

from ringfence.config import load_cluster, parse_yaml
from ringfence.errors import ConfigError
from ringfence.sim.scenario import load_scenario

CLUSTER: dict[str, Any] = {
    "name": "atl",
    "key_file": "/etc/ringfence/cluster.key",
    "timing": {"heartbeat_interval": "200ms", "host_lease_ttl": "6s", "watchdog_timeout": "4s"},
    "networks": [{"name": "ring0", "role": "heartbeat", "port": 5405},
                 {"name": "biz", "role": "vm"}],
    "hosts": [{"name": f"hv{i}", "cpus": 16, "memory": "64GiB", "hypervisor": "qemu:///system",
               "interfaces": {"ring0": {"mac": f"52:54:00:00:00:0{i}",
                                        "address": f"10.0.0.{i}"}}}
              for i in (1, 2, 3)],
    "witnesses": [{"name": "q1", "address": "10.0.0.250"}],
    "store": {"kind": "etcd", "endpoints": ["http://10.0.0.1:2379"]},
    "fencing": {"hv1": {"agent": "fence_ipmilan", "params": {"ip": "10.9.0.1"}}},
    "datastores": [{"name": "rbd", "probe": {"kind": "command", "argv": ["true"]}}],
    "vms": [{"name": "erp", "cpus": 2, "memory": "4GiB", "host": "hv1", "priority": 100,
             "verify": {"tcp": "10.1.2.3:443", "timeout": "5s"}}],
    "policy": {"host_failures_to_tolerate": 1, "max_restart": 1, "max_relocate": 1},
    "alerts": [{"kind": "deadman", "url": "https://hc.example/ping", "every": "1m"}],
}

SCENARIO: dict[str, Any] = {
    "name": "bounds",
    "seed": 1,
    "duration": "120s",
    "cluster": {
        "networks": [{"name": "ring0", "role": "heartbeat"}],
        "hosts": [{"name": f"h{i}", "cpus": 16, "memory": "64GiB"} for i in (1, 2, 3)],
        "fencing": {"h1": {"agent": "power"}},
        "vms": [{"name": "app", "cpus": 2, "memory": "4GiB", "host": "h1"}],
    },
    "events": [{"at": "10s", "do": "link_flap", "host": "h1", "network": "ring0", "count": 2},
               {"at": "20s", "do": "memory_errors", "host": "h1", "count": 5}],
    "sim": {"boot_time": "20s", "packet_loss": 0.0, "link_jitter": "0s",
            "clock_drift_ppm": 0.0},
}


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with the field at `path` (``hosts.0.cpus``) set to `value`."""
    data = copy.deepcopy(data)
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in path.split(".")]
    node: Any = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


def _field(path: str) -> str:
    """``hosts.0.cpus`` -> ``hosts[0].cpus``, as the error messages write it."""
    out = ""
    for key in path.split("."):
        out += f"[{key}]" if key.isdigit() else (f".{key}" if out else key)
    return out


def _problems(tmp_path: Path, data: dict[str, Any], *, scenario: bool) -> str:
    file = tmp_path / "file.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        (load_scenario if scenario else load_cluster)(file)
    return str(caught.value)


def test_the_base_files_are_valid(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CLUSTER), encoding="utf-8")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    load_cluster(tmp_path / "c.yaml")
    load_scenario(tmp_path / "s.yaml")


CLUSTER_CASES = [
    ("name", "x" * 200),
    ("key_file", "/" + "k" * 5000),
    ("timing.heartbeat_interval", "0.000001s"),
    ("timing.heartbeat_interval", "1us"),
    ("timing.heartbeat_interval", "2h"),
    ("timing.host_lease_ttl", "99999999999999h"),
    ("timing.fence_timeout", "30d"),
    ("timing.fence_timeout", "5h"),
    ("timing.clock_margin", "2h"),
    ("networks.0.port", 70000),
    ("networks.0.port", 0),
    ("hosts.0.cpus", 10**9),
    ("hosts.0.memory", "900PiB"),
    ("hosts.0.hypervisor", "not a uri"),
    ("hosts.0.interfaces.ring0.address", "not-an-ip"),
    ("hosts.0.interfaces.ring0.address", "10.0.0.300"),
    ("hosts.0.interfaces.ring0.name", "an-interface-name-longer-than-linux-allows"),
    ("witnesses.0.address", "not-an-ip"),
    ("store.endpoints", ["http://10.0.0.1:99999"]),
    ("store.endpoints", ["ftp://10.0.0.1:2379"]),
    ("fencing.hv1.delay", "10h"),
    ("fencing.hv1.params", {f"p{i}": "v" for i in range(200)}),
    ("vms.0.cpus", 10**6),
    ("vms.0.memory", "1B"),
    ("vms.0.priority", 10**12),
    ("vms.0.priority", -(10**12)),
    ("vms.0.verify.timeout", "3h"),
    ("policy.host_failures_to_tolerate", 10**6),
    ("policy.max_restart", 10**6),
    ("policy.max_relocate", 10**6),
    ("alerts.0.every", "1ms"),
    ("alerts.0.url", "not a url"),
    ("datastores.0.probe.argv", ["x"] * 1000),
]


@pytest.mark.parametrize(("path", "value"), CLUSTER_CASES, ids=[c[0] for c in CLUSTER_CASES])
def test_cluster_fields_have_bounds(tmp_path: Path, path: str, value: Any) -> None:
    text = _problems(tmp_path, _set(CLUSTER, path, value), scenario=False)
    field = _field(path)
    assert any(f": {field}" in row and "file.yaml:" in row for row in text.splitlines()), text


def test_cluster_counts_have_bounds(tmp_path: Path) -> None:
    hosts = [{"name": f"h{i}", "cpus": 1, "memory": "1GiB"} for i in range(300)]
    text = _problems(tmp_path, _set(CLUSTER, "hosts", hosts) | {"vms": [], "fencing": {}},
                     scenario=False)
    assert "hosts" in text and "256" in text, text
    networks = [{"name": f"n{i}", "role": "heartbeat"} for i in range(40)]
    text = _problems(tmp_path, _set(CLUSTER, "networks", networks), scenario=False)
    assert "networks" in text and "16" in text, text


def test_heartbeat_addresses_are_ipv4_and_distinct(tmp_path: Path) -> None:
    data = _set(CLUSTER, "hosts.1.interfaces.ring0.address", "10.0.0.1")
    text = _problems(tmp_path, data, scenario=False)
    assert "hosts[1].interfaces.ring0.address" in text and "hosts[0]" in text, text
    data = _set(CLUSTER, "hosts.1.interfaces.ring0.address", "fe80::1")
    text = _problems(tmp_path, data, scenario=False)
    assert "hosts[1].interfaces.ring0.address" in text and "IPv4" in text, text


SCENARIO_CASES = [
    ("seed", -3),
    ("seed", 2**70),
    ("name", "n" * 1000),
    ("duration", "99999999999999h"),
    ("duration", "30d"),
    ("events.0.count", 10**6),
    ("events.1.count", 10**9),
    ("sim.boot_time", "10h"),
    ("sim.link_jitter", "1h"),
    ("sim.clock_drift_ppm", 1e9),
    ("sim.clock_drift_ppm", -1e9),
    ("sim.packet_loss", 1.5),
    ("cluster.timing", {"heartbeat_interval": "1ms"}),
]


@pytest.mark.parametrize(("path", "value"), SCENARIO_CASES, ids=[c[0] for c in SCENARIO_CASES])
def test_scenario_fields_have_bounds(tmp_path: Path, path: str, value: Any) -> None:
    text = _problems(tmp_path, _set(SCENARIO, path, value), scenario=True)
    field = _field(path)
    assert any(f": {field}" in row and "file.yaml:" in row for row in text.splitlines()), text


def test_scenario_event_count_has_a_bound(tmp_path: Path) -> None:
    events = [{"at": "1s", "do": "heal"} for _ in range(10_001)]
    text = _problems(tmp_path, _set(SCENARIO, "events", events), scenario=True)
    assert "events" in text and "10000" in text, text


# ------------------------------------------------------------------------------ hostile YAML


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail instead of hanging the suite (hostile YAML used to hang the parser)."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still parsing after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _bomb(levels: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for level in range(1, levels):
        name = chr(ord("a") + level)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_with_its_line() -> None:
    with time_limit(20), pytest.raises(ConfigError) as caught:
        parse_yaml(_bomb(), file="bomb.yaml")
    error = caught.value
    assert error.file == "bomb.yaml" and error.line is not None
    assert "alias" in error.message


def test_a_few_aliases_are_fine() -> None:
    text = ("base: &host {cpus: 16, memory: 64GiB}\n"
            "hosts:\n  - {<<: *host, name: h1}\n  - {<<: *host, name: h2}\n")
    data, _lines = parse_yaml(text)
    assert isinstance(data, dict)
    assert data["hosts"] == [{"cpus": 16, "memory": "64GiB", "name": "h1"},
                             {"cpus": 16, "memory": "64GiB", "name": "h2"}]


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_refused_with_its_line(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    text = "name: t\nx: " + opening * 5000 + "1" + closing * 5000 + "\n"
    with time_limit(20), pytest.raises(ConfigError) as caught:
        parse_yaml(text, file="deep.yaml")
    assert caught.value.line == 2 and "nest" in caught.value.message


def test_deep_block_nesting_is_refused() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n"
    with time_limit(20), pytest.raises(ConfigError) as caught:
        parse_yaml(text, file="deep.yaml")
    assert caught.value.line is not None and "nest" in caught.value.message


def test_a_chain_of_aliases_can_not_nest_too_deep() -> None:
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 3000)]
    with time_limit(20), pytest.raises(ConfigError) as caught:
        parse_yaml("\n".join(lines) + "\n", file="chain.yaml")
    assert caught.value.line is not None and "nest" in caught.value.message


def test_a_chain_of_merges_is_refused_cleanly() -> None:
    lines = ["m0: &m0 {k0: 0}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: {i}}}"
                                   for i in range(1, 3000)]
    with time_limit(20), pytest.raises(ConfigError) as caught:
        parse_yaml("\n".join(lines) + "\n", file="merges.yaml")
    assert caught.value.file == "merges.yaml"


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as out:
        out.write("name: t\ndescription: |\n")
        line = "  " + "x" * 1000 + "\n"
        for _ in range(20_000):
            out.write(line)
    with time_limit(20), pytest.raises(ConfigError) as caught:
        load_cluster(path)
    assert caught.value.file == str(path) and "MiB" in caught.value.message
