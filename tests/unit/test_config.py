"""Cluster files: units, schema, cross-checks, and errors that name file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.config import ClusterConfig, Host, Network, load_cluster, parse_cluster, parse_yaml
from ringfence.errors import ConfigError, Problem
from ringfence.units import format_duration, format_size, parse_duration, parse_size

GOOD = """\
name: atl
key_file: /etc/ringfence/cluster.key
timing: {heartbeat_interval: 200ms, host_lease_ttl: 6s, watchdog_timeout: 4s}
networks:
  - {name: ring0, role: heartbeat, port: 5405}
  - {name: ring1, role: heartbeat, port: 5406}
  - {name: biz, role: vm}
  - {name: ceph, role: [storage, management]}
hosts:
  - name: hv1
    cpus: 64
    memory: 512GiB
    hypervisor: qemu:///system
    interfaces:
      ring0: {mac: 52:54:00:00:00:01, address: 10.0.0.1, name: enp3s0f0}
      ring1: {mac: "52:54:00:00:01:01", address: 10.0.1.1}
      ceph:  {mac: "52:54:00:00:02:01"}
    datastores: [rbd]
  - {name: hv2, cpus: 64, memory: 512GiB, networks: [ring0, ring1, biz], datastores: [rbd]}
witnesses:
  - {name: q1, address: 10.0.0.250}
store:
  kind: etcd
  endpoints: [https://10.0.0.1:2379, https://10.0.0.250:2379]
  tls: {ca_file: /etc/ca.pem, cert_file: /etc/cert.pem, key_file: /etc/key.pem}
fencing:
  hv1: {agent: fence_ipmilan, params: {ip: 10.9.0.1, username: admin, lanplus: true}}
datastores:
  - {name: rbd, probe: {kind: command, argv: [rbd, -p, probe, bench]}}
  - {name: nfs1, probe: {kind: file, path: /mnt/nfs1/.ringfence-probe}}
groups:
  - {name: monitoring, vms: [mon-a, mon-b], rule: anti_affinity}
vms:
  - name: erp
    cpus: 8
    memory: 32GiB
    host: hv1
    domain_xml_file: /etc/ringfence/vms/erp.xml
    priority: 100
    verify: {tcp: "10.1.2.3:443", timeout: 5s}
  - {name: mon-a, cpus: 1, memory: 2GiB, host: hv1, prefer: [hv2]}
  - {name: mon-b, cpus: 1, memory: 2GiB, host: hv2, verify: {guest_agent: true}}
policy: {failback: false, host_failures_to_tolerate: 1, shutdown: conditional}
alerts:
  - {kind: webhook, url: "https://ops.example/hook", secret_file: /etc/ringfence/hook.secret}
  - {kind: deadman, url: "https://hc.example/ping/abc", every: 1m}
api: {listen: "0.0.0.0:8443", tls: {cert_file: /c, key_file: /k}, tokens_file: /t}
"""

MINIMAL = """\
networks:
  - {name: ring0, role: heartbeat}
  - {name: ring1, role: heartbeat}
  - {name: biz, role: vm}
hosts:
  - {name: n0, cpus: 16, memory: 64GiB}
  - name: n1
    cpus: 16
    memory: 64GiB
vms:
  - {name: app, cpus: 2, memory: 4GiB, host: n0}
"""


def write(tmp_path: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def load_error(tmp_path: Path, text: str) -> tuple[ConfigError, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_cluster(path)
    return caught.value, path


def assert_problem(error: ConfigError, path: Path, line: int, field: str, *words: str) -> None:
    rendered = str(error)
    expected_prefix = f"{path}:{line}: {field}: "
    matching = [row for row in rendered.splitlines() if row.startswith(expected_prefix)]
    assert matching, f"no problem starting with {expected_prefix!r} in:\n{rendered}"
    for word in words:
        assert any(word in row for row in matching), f"{word!r} not in {matching}"


# ----------------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("6s", 6.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        (5, 5.0),
        (0.25, 0.25),
        ("1m30s", 90.0),
        ("3", 3.0),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-1s", "fast", "5 parsecs", "1.2.3s", "", -3])
def test_parse_duration_rejects(bad: str | int) -> None:
    with pytest.raises(ValueError, match="a duration such as 200ms, 6s, 2m or 1h"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 << 20),
        ("64GiB", 64 << 30),
        ("1TiB", 1 << 40),
        ("4KiB", 4096),
        (1024, 1024),
        ("1.5GiB", 3 << 29),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["8GB", "1MB", "2TB", "lots", "-1GiB", "0.5B", -5])
def test_parse_size_rejects(bad: str | int) -> None:
    with pytest.raises(ValueError, match=r"KiB|GiB"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "200ms"), (6, "6s"), (90, "90s"), (1.25, "1.25s"), (0, "0s"), (120, "2m"), (7200, "2h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_size() -> None:
    assert format_size(64 << 30) == "64GiB"
    assert format_size(1536 << 20) == "1536MiB"
    assert format_size(1000) == "1000B"


# ------------------------------------------------------------------------------- good files


def test_good_file_loads(tmp_path: Path) -> None:
    config = load_cluster(write(tmp_path, GOOD))
    assert config.name == "atl"
    assert config.timing.heartbeat_interval == pytest.approx(0.2)
    assert config.timing.effective_heartbeat_timeout == pytest.approx(0.8)
    assert config.timing.effective_manager_lease_ttl == pytest.approx(2.0)  # TTL / 3
    assert config.host("hv1").memory == 512 << 30
    assert config.host("hv1").interfaces["ring0"].mac == "52:54:00:00:00:01"
    assert config.network("ceph").role == ["storage", "management"]
    assert config.network("biz").role == ["vm"]
    assert config.heartbeat_networks() == ["ring0", "ring1"]
    assert config.host_networks("hv1") == ["ring0", "ring1", "ceph"]
    assert config.host_networks("hv2") == ["ring0", "ring1", "biz"]
    assert config.host_networks("q1") == ["ring0", "ring1", "biz", "ceph"]
    assert config.store_members() == ["hv1", "hv2", "q1"]
    assert config.fencing["hv1"].params == {"ip": "10.9.0.1", "username": "admin", "lanplus": True}
    assert config.vm("erp").verify is not None
    assert config.alerts[1].every == 60.0
    with pytest.raises(KeyError, match="erp"):
        config.vm("epr")


def test_minimal_file_and_defaults(tmp_path: Path) -> None:
    config = load_cluster(write(tmp_path, MINIMAL))
    assert config.name == "cluster"
    assert config.timing.host_lease_ttl == 6.0
    assert config.policy.shutdown == "conditional"
    assert config.store_members() == ["n0", "n1"]
    assert config.host("n1").network_names(["a", "b"]) == ["a", "b"]


def test_yaml_1_1_words_stay_strings() -> None:
    data, lines = parse_yaml("on: yes\nmac: 52:54:00:00:00:01\nn: 010\nf: 1.5\nb: true\n")
    assert data == {"on": "yes", "mac": "52:54:00:00:00:01", "n": 10, "f": 1.5, "b": True}
    assert lines[("b",)] == 5


def test_python_construction_checks_too() -> None:
    networks = [Network(name="r", role="heartbeat")]
    config = ClusterConfig(networks=networks, hosts=[Host(name="a", cpus=1, memory="1GiB")])
    assert config.host("a").cpus == 1
    with pytest.raises(ValueError, match="unknown network 'x'"):
        ClusterConfig(
            networks=networks, hosts=[Host(name="a", cpus=1, memory="1GiB", networks=["r", "x"])]
        )


def test_parse_cluster_without_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cluster({"networks": [], "hosts": []})
    assert caught.value.file is None
    assert "hosts: needs at least 1 item" in str(caught.value)


# ------------------------------------------------------------------------------- bad files


def test_bad_duration(tmp_path: Path) -> None:
    text = MINIMAL + "timing:\n  heartbeat_interval: 200 msec\n"
    error, path = load_error(tmp_path, text)
    assert_problem(
        error,
        path,
        line_of(text, "200 msec"),
        "timing.heartbeat_interval",
        "a duration such as 200ms, 6s, 2m or 1h",
        "'200 msec'",
    )


def test_bad_size(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  - {name: n0, cpus: 16, memory: 64GiB}", "  - {name: n0, cpus: 16, memory: 64GB}"
    )
    error, path = load_error(tmp_path, text)
    assert_problem(error, path, line_of(text, "64GB"), "hosts[0].memory", "GiB")


def test_unknown_field_suggests(tmp_path: Path) -> None:
    text = MINIMAL.replace("    cpus: 16\n", "    cpu: 16\n")
    error, path = load_error(tmp_path, text)
    assert_problem(
        error,
        path,
        line_of(text, "cpu: 16"),
        "hosts[1].cpu",
        "unknown field 'cpu'; did you mean 'cpus'?",
    )
    assert_problem(
        error, path, line_of(text, "name: n1"), "hosts[1].cpus", "missing required field 'cpus'"
    )


def test_missing_required_field(tmp_path: Path) -> None:
    text = MINIMAL.replace("    memory: 64GiB\n", "")
    error, path = load_error(tmp_path, text)
    assert_problem(
        error, path, line_of(text, "name: n1"), "hosts[1].memory", "missing required field 'memory'"
    )


def test_bad_literal_lists_allowed_values(tmp_path: Path) -> None:
    text = MINIMAL.replace("{name: biz, role: vm}", "{name: biz, role: vn}")
    error, path = load_error(tmp_path, text)
    assert_problem(
        error,
        path,
        line_of(text, "role: vn"),
        "networks[2].role",
        "heartbeat, vm, storage, management",
        "did you mean 'vm'",
    )


def test_unknown_network_reference(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  - {name: n0, cpus: 16, memory: 64GiB}",
        "  - {name: n0, cpus: 16, memory: 64GiB, networks: [ring0, ring9]}",
    )
    error, path = load_error(tmp_path, text)
    assert_problem(
        error,
        path,
        line_of(text, "ring9"),
        "hosts[0].networks[1]",
        "unknown network 'ring9'; known networks: ring0, ring1, biz",
    )


def test_vm_too_big_for_its_host(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "{name: app, cpus: 2, memory: 4GiB, host: n0}",
        "{name: app, cpus: 32, memory: 128GiB, host: n0}",
    )
    error, path = load_error(tmp_path, text)
    line = line_of(text, "name: app")
    assert_problem(error, path, line, "vms[0].cpus", "32", "16")
    assert_problem(error, path, line, "vms[0].memory", "128GiB", "64GiB")


def test_vms_on_one_host_must_fit_together(tmp_path: Path) -> None:
    text = (
        MINIMAL + "  - {name: db, cpus: 10, memory: 4GiB, host: n0}\n"
        "  - {name: web, cpus: 8, memory: 4GiB, host: n0}\n"
    )
    error, path = load_error(tmp_path, text)
    assert_problem(
        error,
        path,
        line_of(text, "name: web"),
        "vms[2].host",
        "app (2), db (10), web (8)",
        "20 CPUs",
        "has 16",
    )


def test_watchdog_not_shorter_than_lease(tmp_path: Path) -> None:
    text = MINIMAL + "timing: {host_lease_ttl: 6s, watchdog_timeout: 6s}\n"
    error, path = load_error(tmp_path, text)
    assert_problem(
        error,
        path,
        line_of(text, "watchdog_timeout: 6s"),
        "timing.watchdog_timeout",
        "must be shorter than host_lease_ttl",
        "hung host",
    )


def test_host_without_heartbeat_network(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  - {name: n0, cpus: 16, memory: 64GiB}",
        "  - {name: n0, cpus: 16, memory: 64GiB, networks: [biz]}",
    )
    error, path = load_error(tmp_path, text)
    assert_problem(
        error,
        path,
        line_of(text, "networks: [biz]"),
        "hosts[0].networks",
        "no heartbeat network",
        "ring0, ring1",
    )


def test_duplicate_names_and_unknown_store_member(tmp_path: Path) -> None:
    text = MINIMAL + "witnesses: [{name: n1}]\nstore: {members: [n0, n1, q9]}\n"
    error, path = load_error(tmp_path, text)
    assert_problem(error, path, line_of(text, "witnesses:"), "witnesses[0].name", "duplicate")
    assert_problem(error, path, line_of(text, "store:"), "store.members[2]", "unknown", "q9")


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    text = MINIMAL + "name: alpha\nname: beta\n"
    error, path = load_error(tmp_path, text)
    assert error.line == line_of(text, "name: beta")
    assert str(error).startswith(f"{path}:{error.line}: duplicate key 'name'")


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    text = "networks:\n  - {name: ring0, role: heartbeat\nhosts: []\n"
    error, path = load_error(tmp_path, text)
    assert error.file == str(path)
    assert error.line == 3
    assert str(error).startswith(f"{path}:3: invalid YAML")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    error, path = load_error(tmp_path, "- a\n- b\n")
    assert (
        str(error) == f"{path}:1: expected a mapping of cluster fields at the top level, got a list"
    )


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_cluster(missing)
    assert str(caught.value) == f"{missing}: file not found"


def test_config_error_renders_every_problem() -> None:
    error = ConfigError(
        problems=[
            Problem("a.yaml", 3, "hosts[0].cpus", "bad"),
            Problem("a.yaml", None, "", "worse"),
            Problem(None, None, "x", "worst"),
        ]
    )
    assert str(error) == "a.yaml:3: hosts[0].cpus: bad\na.yaml: worse\nx: worst"
    assert (error.file, error.line, error.path, error.message) == (
        "a.yaml",
        3,
        "hosts[0].cpus",
        "bad",
    )
    single = ConfigError("oops", file="f.yaml", line=2, path="vms[0]")
    assert str(single) == "f.yaml:2: vms[0]: oops"
