"""Post-incident reports, status pages and the incident commands, checked as text.

The reports of the carrier-loss (seed 000) and storage-authorization (seed 003) scenarios must
name what the seed reports had to find by hand: which NIC lost carrier and when (and that it
flapped before), which datastore was not writable and why, and what to change.
"""

from __future__ import annotations

import functools
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import SCENARIOS
from ringfence.cli import main
from ringfence.journal.events import Event
from ringfence.journal.incidents import Incident, build_incidents
from ringfence.journal.report import (
    ReportContext,
    fmt_duration,
    fmt_time,
    incidents_of_simulation,
    recommendations,
    render_html,
    render_markdown,
    write_reports,
)
from ringfence.journal.status_page import overall_state, write_status_page
from ringfence.sim.runner import simulate
from ringfence.sim.scenario import load_scenario

SECTIONS = ["Summary", "Root cause", "Customer summary", "Customer impact", "Timeline",
            "Detection", "Fencing", "Recovery", "Verification", "Root-cause evidence",
            "Operator actions", "Recommendations"]


@functools.cache
def simulated(name: str) -> tuple[tuple[Incident, ...], ReportContext]:
    incidents, ctx = incidents_of_simulation(simulate(load_scenario(SCENARIOS / f"{name}.yaml")))
    return tuple(incidents), ctx


def report(name: str, incident_id: str) -> str:
    incidents, ctx = simulated(name)
    return render_markdown(next(i for i in incidents if i.id == incident_id), ctx)


def section(markdown: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def test_carrier_loss_report_000() -> None:
    text = report("000-carrier-loss", "INC-0002")
    assert text.startswith("# INC-0002: atl2 lost carrier on eth0 (ring0), eth1 (ring1), "
                           "eth2 (customer); fenced by fence agent; 2 VMs restarted elsewhere\n")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == SECTIONS
    assert "**Severity:** critical" in text
    assert "**Status:** resolved, every affected VM verified" in text
    impact = section(text, "Customer impact")
    assert "| cust-a | atl2 | atl3 | t+201.4s | t+201.5s | 0.13 s | 6.5 s | fence agent | " \
           "answers since t+206.5s |" in impact
    assert "| cust-b | atl2 | atl1 |" in impact and "Not affected: cust-c." in impact
    summary = section(text, "Summary")
    assert "kept running but were cut off from the network until atl2 was fenced" in summary
    assert "atl2 was fenced through its fence agent at t+201.4s" in summary
    evidence = section(text, "Root-cause evidence")
    assert "before the incident, t+60.1s: atl2: eth2 (customer) lost carrier" in evidence
    assert "before the incident, t+61.1s: atl2: eth2 (customer) carrier changed 4 times " \
           "within 60s" in evidence
    assert "t+200.1s: atl2: eth0 (ring0) lost carrier" in evidence
    fencing = section(text, "Fencing")
    assert "t+200.8s fence started: atl1 fences atl2 (no heartbeat on any link)" in fencing
    assert "cust-a and cust-b: restarted after the fence agent path" in fencing
    verification = section(text, "Verification")
    assert "cust-a answers its check on atl3 since t+206.5s (5.0 s after it started)" \
        in verification
    assert "No operator action was recorded." in section(text, "Operator actions")
    advice = section(text, "Recommendations")
    assert "NIC carrier on atl2 eth2 (customer) was lost 2 times in the 24 h before the " \
           "failure" in advice
    assert "schedule a NIC firmware/driver update for atl2" in advice
    timeline = section(text, "Timeline")
    assert "| t+200.6s | atl2 |  | heartbeat_lost | atl1 hears nothing from atl2 on ring0, " \
           "ring1 for 0.8s (also reported by atl3) |" in timeline


def test_early_warning_report_000() -> None:
    text = report("000-carrier-loss", "INC-0001")
    assert "**Status:** escalated into INC-0002" in text
    assert "**This early warning escalated into INC-0002 at t+200.1s" in text
    assert "NIC carrier on atl2 eth2 (customer) is unstable" in section(text, "Recommendations")


def test_storage_authorization_report_003() -> None:
    text = report("003-reboot-storage-unwritable", "INC-0001")
    assert re.findall(r"^## (.+)$", text, re.M) == SECTIONS
    assert text.startswith("# INC-0001: kct09 rebooted cleanly; datastore rbd not writable "
                           "after boot; 2 VMs restarted elsewhere")
    summary = section(text, "Summary")
    assert "At t+51.0s: kct09: datastore rbd fails its write probe: write failed: permission " \
           "denied (EACCES)." in summary
    assert "ringfence restarted vps1 and vps2 on kct08; each was stopped for up to 21.2 s" \
        in summary
    evidence = section(text, "Root-cause evidence")
    assert "Storage probes:" in evidence
    assert "t+51.0s: kct09: datastore rbd fails its write probe: write failed: permission " \
           "denied (EACCES)" in evidence
    assert "| vps1 | kct09 | kct08 | t+30.0s | t+51.2s | 21.2 s | 31.2 s | clean shutdown |" \
        in section(text, "Customer impact")
    advice = section(text, "Recommendations")
    assert "Datastore rbd was not writable from kct09 after its boot (write failed: permission " \
           "denied (EACCES)): check the host's storage credentials and authorization (for " \
           "Ceph" in advice
    assert "No host had to be fenced." in section(text, "Fencing")


def test_recommendations_follow_the_evidence() -> None:
    monitoring = report("001-reboot-renamed-nics-monitoring", "INC-0001")
    advice = section(monitoring, "Recommendations")
    assert "Monitoring/alerting VMs mon-a and ticketing shared host hv1 and went down " \
           "together (already: mon-a in anti-affinity group monitoring)" in advice
    assert "(eth0 → enp3s0f1, eth1 → enp3s0f2, eth2 → enp3s0f0): ringfence found them by MAC" \
        in advice
    assert "took the watchdog path (mon-a and ticketing down up to 11.9 s): add a power fence " \
           "agent for hv1" in advice
    assert "hv1: ring0 interface eth0 → enp3s0f1 (MAC 52:54:00:aa:00:01)" in section(
        monitoring, "Root-cause evidence")
    ram = report("003-ram-fault-host-replacement", "INC-0001")
    assert "kct09 reported 12 corrected memory errors: run a memory test and replace the " \
           "failing DIMM" in ram
    assert "keep policy.evacuate_degraded on" in ram
    later = report("003-ram-fault-host-replacement", "INC-0002")
    assert "12 corrected memory errors before it failed" in later
    hang = report("002-node-hangs", "INC-0001")
    assert "took the watchdog path (db down up to 9.0 s)" in hang
    split = report("004-split-site-no-witness", "INC-0001")
    assert "add a witness" in split
    forced = report("004-two-operators-force-start", "INC-0001")
    assert "alice — force start pending: alice forces app onto node0 without quorum" in section(
        forced, "Operator actions")


def unverified_incident() -> Incident:
    events = [Event.of(0.0, "vm_started", "h1", "app", by="h1", token=2),
              Event.of(10.0, "heartbeat_lost", "h1", by="h2", links=("r0",), duration=0.8),
              Event.of(18.0, "host_fenced", "h1", by="h2", method="watchdog",
                       detail="lease gone"),
              Event.of(18.2, "vm_started", "h2", "app", by="h2", token=9)]
    (incident,) = build_incidents(events, stream_end=100.0)
    return incident


def test_resolution_without_verification_is_loud() -> None:
    incident = unverified_incident()
    ctx = ReportContext(cluster="lab", simulated=False, source="test")
    text = render_markdown(incident, ctx)
    assert "**Status:** RESOLVED WITHOUT VERIFICATION" in text
    assert "**RESOLVED WITHOUT VERIFICATION at 1970-01-01 00:01:18.2 UTC: app runs again, but " \
           "no check confirmed that it answers." in text
    assert "| app | h1 | h2 | 00:00:09.2 | 00:00:18.2 | 9.0 s |" in text
    assert any("add a verify check" in r for r in recommendations(incident, ctx))
    html = render_html(incident, ctx)
    assert '<p class="loud">RESOLVED WITHOUT VERIFICATION' in html


def test_time_and_duration_formats() -> None:
    assert fmt_time(12.34, ReportContext(simulated=True)) == "t+12.3s"
    assert fmt_time(1_780_000_000.25, ReportContext()) == "2026-05-28 20:26:40.2 UTC"
    assert fmt_time(1_780_000_000.25, ReportContext(), date=False) == "20:26:40.2"
    assert [fmt_duration(s) for s in (0.133, 6.46, 179.0, 7500.0)] == [
        "0.13 s", "6.5 s", "2 min 59 s", "2 h 05 min"]


class _Checker(HTMLParser):
    """Collects tags and every URL the page would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_html_report_is_self_contained_and_printable() -> None:
    incidents, ctx = simulated("000-carrier-loss")
    page = render_html(incidents[1], ctx)
    checker = _Checker()
    checker.feed(page)
    assert "script" not in checker.tags and "svg" in checker.tags
    assert set(checker.urls) <= {"data:,"}  # nothing to fetch
    assert "@media print" in page and "@page" in page
    assert re.findall(r'<section id="\w+"><h2>([^<]+)</h2>', page) == SECTIONS
    assert page.count("<rect") > 10 and "hosts and VMs over time" in page
    assert "RESOLVED WITHOUT" not in page


def test_write_reports_and_status_page(tmp_path: Path) -> None:
    incidents, ctx = simulated("000-carrier-flaps-proactive-evacuation")
    written = write_reports(incidents, ctx, tmp_path / "reports")
    assert [p.name for p in written] == ["INC-0001.md", "INC-0001.html", "INC-0002.md",
                                         "INC-0002.html", "index.md", "index.html"]
    index = written[4].read_text()
    assert "| INC-0001 | warning | resolved | t+60.1s | atl2 carrier flapping on eth2 " \
           "(customer); 2 VMs moved away by live migration |" in index
    assert "| INC-0002 | major | open |" in index
    pages = write_status_page(tmp_path / "page", cluster="atl",
                              hosts_state={"atl1": "online", "atl2": "fenced",
                                           "atl3": "online"},
                              incidents=incidents, now=300.0, simulated=True)
    document = json.loads(pages[1].read_text())
    assert document["overall"]["state"] == "degraded"
    assert [i["id"] for i in document["open_incidents"]] == ["INC-0002"]
    assert [i["id"] for i in document["history"]] == ["INC-0001"]
    assert document["history"][0]["summary"] == (
        "Host atl2: a network link became unstable. 2 virtual machines were moved to another "
        "host before anything failed, without interruption.")
    page = pages[0].read_text()
    assert "taken out of service by the cluster" in page and "<script" not in page
    assert overall_state(incidents) == "degraded"  # the open major incident alone says so


def test_status_page_for_a_disruption(tmp_path: Path) -> None:
    incidents, _ = simulated("vm-crash-restart-then-relocate")
    assert overall_state(incidents) == "disruption"
    paths = write_status_page(tmp_path, cluster="c", hosts_state={"host1": "online"},
                              incidents=incidents, now=200.0, simulated=True)
    document = json.loads(paths[1].read_text())
    assert document["overall"]["title"] == "Service disruption"
    assert "1 virtual machine is still down (app)" in document["open_incidents"][0]["summary"]


# ---------------------------------------------------------------------- the command line
def test_simulate_writes_incident_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    out = tmp_path / "reports"
    assert main(["simulate", str(SCENARIOS / "000-carrier-loss.yaml"), "--report",
                 str(out)]) == 0
    assert f"{out}/INC-0002.md" in capsys.readouterr().out
    assert (out / "INC-0002.md").read_text() == report("000-carrier-loss", "INC-0002")
    assert (out / "INC-0002.html").read_text().startswith("<!DOCTYPE html>")
    json_out = tmp_path / "json"
    assert main(["simulate", str(SCENARIOS / "000-carrier-loss.yaml"), "--json", "--report",
                 str(json_out)]) == 0
    json.loads(capsys.readouterr().out)  # --json output stays one JSON document
    assert (json_out / "index.html").exists()


def test_incident_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = str(SCENARIOS / "003-reboot-storage-unwritable.yaml")
    assert main(["incident", "list", "--scenario", scenario]) == 0
    assert capsys.readouterr().out.startswith("INC-0001  critical  resolved")
    assert main(["incident", "show", "inc-1", "--scenario", scenario, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["vms"][0]["fence_path"] == "clean shutdown" and shown["events"]
    assert main(["incident", "report", "1", "--scenario", scenario]) == 0
    assert "## Root-cause evidence" in capsys.readouterr().out
    target = tmp_path / "r.html"
    assert main(["incident", "report", "INC-0001", "--format", "html", "--out", str(target),
                 "--scenario", scenario]) == 0
    assert target.read_text().startswith("<!DOCTYPE html>")
    capsys.readouterr()
    assert main(["incident", "show", "INC-0007", "--scenario", scenario]) == 2
    assert "no incident 'INC-0007'; known: INC-0001" in capsys.readouterr().err
    assert main(["incident", "list", "--journal", str(tmp_path / "nothing")]) == 2
    assert "nothing: no such file" in capsys.readouterr().err
    assert main(["incident", "list", "--journal", str(tmp_path), "--scenario", scenario]) == 2
    assert main(["status-page", "--out", str(tmp_path / "page"), "--scenario", scenario]) == 0
    assert json.loads((tmp_path / "page" / "status.json").read_text())["hosts"]


def test_journal_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "journal-h1.jsonl").write_text(
        '{"t": 1780000000.0, "seq": 1, "by": "h1", "kind": "quorum_gained", "host": "h1", '
        '"vm": null, "text": "h1 joined with incarnation 1"}\n'
        '{"t": 1780000060.0, "seq": 2, "by": "h1", "kind": "link_down", "host": "h1", '
        '"vm": null, "text": "h1: eth0 (ring0) lost carrier"}\n')
    assert main(["journal", "export", "--json", "--journal", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["quorum_gained", "link_down"]
    assert main(["journal", "export", "--since", "2026-05-28T20:27:00Z", "--journal",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "link_down" in out and "quorum_gained" not in out and "UTC" in out
    assert main(["journal", "export", "--since", "yesterday-ish", "--journal",
                 str(tmp_path)]) == 2
    assert "--since: expected an ISO 8601 time" in capsys.readouterr().err
    assert main(["incident", "list", "--journal", str(tmp_path)]) == 0
    assert "warning" in capsys.readouterr().out


def test_docs_example_is_the_current_report() -> None:
    """docs/incidents.md shows a real report of seed 000; it must be what the code writes."""
    page = (SCENARIOS.parent / "docs" / "incidents.md").read_text(encoding="utf-8")
    match = re.search(r"^````markdown\n(.*?)^````$", page, re.M | re.S)
    assert match, "docs/incidents.md has no example report"
    assert match.group(1) == report("000-carrier-loss", "INC-0002"), (
        "docs/incidents.md's example is stale: paste the output of `ringfence simulate "
        "scenarios/000-carrier-loss.yaml --report DIR` (DIR/INC-0002.md)")


# ---------------------------------------------------------------------- root cause, customers
@pytest.mark.parametrize(("name", "incident_id", "host", "category"), [
    ("000-carrier-loss", "INC-0002", "atl2", "network"),
    ("002-node-hangs", "INC-0001", "nodeA", "hang"),
    ("003-reboot-storage-unwritable", "INC-0001", "kct09", "planned"),
    ("003-ram-fault-host-replacement", "INC-0001", "kct09", "memory"),
    ("001-reboot-renamed-nics-monitoring", "INC-0001", "hv1", "power_or_nics"),
])
def test_root_cause_in_plain_words_from_the_evidence(name: str, incident_id: str, host: str,
                                                     category: str) -> None:
    from ringfence.journal.root_cause import root_causes

    incidents, _ = simulated(name)
    incident = next(i for i in incidents if i.id == incident_id)
    (cause, *_) = root_causes(incident)
    assert (cause.host, cause.category) == (host, category), cause
    assert cause.words.startswith(host)
    assert section(report(name, incident_id), "Root cause").strip().startswith(f"- {host}")


def test_customer_summary_names_no_internal_host_unless_told() -> None:
    from dataclasses import replace

    from ringfence.journal.root_cause import customer_summary, participants

    incidents, ctx = simulated("000-carrier-loss")
    incident = next(i for i in incidents if i.id == "INC-0002")
    text = customer_summary(incident, ctx)
    assert not any(h in text for h in ("atl1", "atl2", "atl3")), text
    assert "cust-a and cust-b were unreachable for up to 6.5 s" in text
    assert "checked to be answering" in text
    assert "(atl2)" in customer_summary(incident, replace(ctx, customer_host_names=True))
    # every host that took part: the lost host, the leader that fenced it, the new hosts
    assert participants(incident) == ("atl1", "atl2", "atl3")
    assert "**Hosts taking part:** atl1, atl2, atl3" in report("000-carrier-loss", "INC-0002")


def test_a_lost_host_gets_a_follow_up_not_no_change() -> None:
    incidents, ctx = simulated("001-reboot-renamed-nics-monitoring")
    found = recommendations(incidents[0], ctx)
    assert any(r.startswith("Find out why hv1 failed: look at its BMC event log") for r in found)
    assert not any(r.startswith("No change recommended") for r in found)


def test_status_says_why_the_store_does_not_answer() -> None:
    from ringfence.status import render

    document = {"cluster": "c", "store": {"kind": "etcd", "quorum": False,
                                          "members": ["h1", "h2", "h3"],
                                          "error": "no endpoint answered: 10.0.0.1:2379 "
                                                   "connection refused"},
                "leader": None, "hosts": {}, "vms": {}, "incidents": []}
    assert "NO QUORUM: no endpoint answered: 10.0.0.1:2379 connection refused" in render(
        document)
