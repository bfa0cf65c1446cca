"""`ringfence check` on the alerting path's shared fate (alerts/shared_fate.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ringfence.check import CheckReport, analyse
from ringfence.config import load_cluster

SEED_001 = """\
name: kolab
networks: [{name: ring0, role: heartbeat}, {name: ring1, role: heartbeat}]
hosts:
  - {name: hv1, cpus: 32, memory: 128GiB, interfaces: {ring0: {address: 10.0.0.1}}}
  - {name: hv2, cpus: 32, memory: 128GiB}
  - {name: hv3, cpus: 32, memory: 128GiB}
vms:
  - {name: monitor, cpus: 2, memory: 4GiB, host: hv1}
  - {name: tickets, cpus: 2, memory: 4GiB, host: hv1}
  - {name: web, cpus: 4, memory: 8GiB, host: hv2}
alerts:
  - {kind: webhook, url: "https://tickets.example/hook"}
  - {kind: email, smtp: "10.0.0.1:25", to: [ops@example.org]}
  - {kind: deadman, url: "http://monitor:8080/ping", every: 1m}
"""


def check(tmp_path: Path, text: str) -> CheckReport:
    path = tmp_path / "cluster.yaml"
    path.write_text(textwrap.dedent(text))
    return analyse(load_cluster(path))


def texts(report: CheckReport, failure: str | None) -> list[str]:
    return [f.text for f in report.findings
            if f.kind == "alert_path" and f.failure == failure and f.severity == "warning"]


def test_seed_001_monitoring_ticketing_and_routes_on_one_host(tmp_path: Path) -> None:
    report = check(tmp_path, SEED_001)
    on_hv1 = texts(report, "host hv1")
    assert any("VMs monitor, tickets all run on hv1" in t and "anti_affinity" in t
               for t in on_hv1)
    assert any("every alert route goes through host hv1" in t for t in on_hv1)
    assert any("email (10.0.0.1:25) goes to host hv1 itself" in t for t in on_hv1)
    [deadman] = [t for t in texts(report, None) if t.startswith("deadman route")]
    assert "VM monitor (on hv1) of this cluster" in deadman
    # ...and that deadman route is not also praised as an outside watcher
    assert not any(f.text.startswith("outside watcher") for f in report.findings)


def test_watchers_not_kept_apart_can_end_up_together(tmp_path: Path) -> None:
    text = SEED_001.replace("host: hv1}\n  - {name: tickets, cpus: 2, memory: 4GiB, host: hv1}",
                            "host: hv1}\n  - {name: tickets, cpus: 2, memory: 4GiB, host: hv3}")
    report = check(tmp_path, text)
    [apart] = [t for t in texts(report, None) if "no anti-affinity group keeps apart" in t]
    assert "monitor+tickets" in apart
    grouped = check(tmp_path, text + "groups: [{name: watchers, rule: anti_affinity, "
                                      "vms: [monitor, tickets]}]\n")
    assert not [t for t in texts(grouped, None) if "keeps apart" in t]


def test_routes_outside_the_cluster_are_quiet(tmp_path: Path) -> None:
    text = SEED_001.split("alerts:")[0] + (
        "alerts:\n  - {kind: webhook, url: 'https://pager.example/hook'}\n"
        "  - {kind: deadman, url: 'https://hc.example/ping/1'}\n"
        "groups: [{name: watchers, rule: anti_affinity, vms: [monitor, tickets]}]\n")
    text = text.replace("{name: tickets, cpus: 2, memory: 4GiB, host: hv1}",
                        "{name: tickets, cpus: 2, memory: 4GiB, host: hv3}")
    report = check(tmp_path, text)
    assert not [f for f in report.findings if f.kind == "alert_path"]
