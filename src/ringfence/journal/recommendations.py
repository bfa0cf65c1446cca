"""What to change after an incident, derived from its evidence (never generic advice): NIC
carrier history, memory errors, storage authorization, renamed NICs, the watchdog path, failed
fence agents, unverified or failing VMs, crashes, missing room or witness, a lost host, and
the shared fate of monitoring and ticketing VMs (seed 001).
"""

from __future__ import annotations

import math
import re

from ringfence.journal.incidents import (
    Evidence,
    Incident,
)
from ringfence.journal.report_blocks import (
    ReportContext,
    _names,
    _plural,
    fmt_duration,
    fmt_time,
)
from ringfence.journal.root_cause import root_causes

# Names that mark a VM as part of the alerting path (seed 001: the monitoring and the ticketing
# system ran on the host that failed, so nobody was told).
ALERTING_VM = re.compile(
    r"mon|nagios|icinga|zabbix|prometheus|alertmanager|grafana|alert|ticket|helpdesk|"
    r"support|pager|oncall|phabricator|jira|otrs", re.IGNORECASE)

# Words of an operating system's or storage client's error that mean "not allowed".
_AUTH_ERROR = re.compile(r"permission|denied|EACCES|EPERM|auth", re.IGNORECASE)



def _nic_of(e: Evidence) -> str | None:
    """'eth1 (storage)': the NIC and its network, from a carrier event's fields."""
    if e.fact.nic is None:
        return None
    return f"{e.fact.nic} ({e.fact.network})" if e.fact.network else e.fact.nic


# ====================================================================== recommendations
def _flap_losses(e: Evidence) -> int:
    """N carrier changes are N/2 losses (at least one)."""
    return max(1, math.ceil((e.fact.count or 0) / 2))


def _carrier_history(incident: Incident) -> dict[tuple[str, str], tuple[int, list[Evidence]]]:
    """Carrier losses per (host, NIC) before the failure: link_down events, and flapping
    reports (N carrier changes are N/2 losses, the link_downs inside counted once)."""
    cutoff = incident.first_failure_at if incident.first_failure_at is not None \
        else incident.stream_end
    history: dict[tuple[str, str], list[Evidence]] = {}
    for e in incident.evidence:
        if e.kind in ("link_down", "link_flapping") and e.host and e.t < cutoff:
            nic = _nic_of(e)
            if nic is not None and e.fact.cause != "none_at_start":
                history.setdefault((e.host, nic), []).append(e)
    result: dict[tuple[str, str], tuple[int, list[Evidence]]] = {}
    for key, found in sorted(history.items()):
        flaps = [e for e in found if e.kind == "link_flapping"]
        count = sum(_flap_losses(e) for e in flaps)
        count += sum(1 for e in found if e.kind == "link_down"
                     and not any(0 <= f.t - e.t <= 60.0 for f in flaps))
        result[key] = (count, found)
    return result


def recommendations(incident: Incident, ctx: ReportContext) -> list[str]:
    """What to change, derived from the incident's evidence (never generic advice)."""
    found: list[str] = []
    failed = incident.first_failure_at is not None
    for (host, nic), (count, events) in _carrier_history(incident).items():
        flapped = [e for e in events if e.kind == "link_flapping"]
        detail = ""
        if flapped:
            flap = flapped[0].fact
            within = f" within {flap.duration:g}s" if flap.duration is not None else ""
            detail = (f" ({nic} carrier changed {flap.count or 0} times{within} at "
                      f"{fmt_time(flapped[0].t, ctx)})")
        if failed:
            found.append(f"NIC carrier on {host} {nic} was lost {_plural(count, 'time')} in the "
                         f"24 h before the failure{detail}: schedule a NIC firmware/driver "
                         f"update for {host} (vendor-certified versions) in a maintenance "
                         f"window, and check its cable, transceiver and switch port.")
        elif flapped:
            found.append(f"NIC carrier on {host} {nic} is unstable{detail}: schedule a NIC "
                         f"firmware/driver update and check the cable and switch port before "
                         f"the link fails for good.")
    memory = [e for e in incident.evidence if e.kind == "memory_errors" and e.host]
    for host in sorted({e.host for e in memory if e.host}):
        counts = [e.fact.count for e in memory if e.host == host and e.fact.count]
        moved = [v.vm for v in incident.vms if v.moved_live and v.from_host == host]
        before = " before it failed" if failed and any(
            e.t < (incident.first_failure_at or 0.0) for e in memory if e.host == host) else ""
        text = (f"{host} reported {sum(counts) or 'new'} corrected memory errors{before}: run a "
                f"memory test and replace the failing DIMM before {host} takes VMs again.")
        if moved:
            text += (f" Proactive evacuation moved {_names(moved)} away without downtime: keep "
                     f"policy.evacuate_degraded on.")
        elif any(not v.moved_live for v in incident.vms):
            text += " Turn on policy.evacuate_degraded so that VMs leave before the host fails."
        found.append(text)
    for e in incident.evidence:
        if e.kind != "storage_unwritable" or not e.host:
            continue
        booted = any(x.kind in ("host_joined", "host_shutdown", "host_fenced",
                                "watchdog_reset") and x.host == e.host and x.t <= e.t
                     for x in incident.events)
        name = e.fact.datastore or "its datastore"
        error = e.fact.detail or "write probe failed"
        # The probe's error comes from outside ringfence (the OS or the storage client): its
        # words are the only sign of an authorization failure, so they are matched here.
        auth = _AUTH_ERROR.search(error)
        where = "after its boot" if booted else "in a write probe"
        advice = ("check the host's storage credentials and authorization (for Ceph: the "
                  "client's capabilities, which a storage upgrade may require anew)" if auth
                  else "check the storage network, paths and the datastore itself")
        found.append(f"Datastore {name} was not writable from {e.host} {where} ({error}): "
                     f"{advice} before {e.host} takes VMs again; ringfence kept VMs off it.")
        break
    found += _shared_fate(incident, ctx)
    renamed = [e for e in incident.evidence if e.kind == "nic_renamed"]
    if renamed:
        pairs = []
        for e in renamed:
            if e.fact.nic and e.fact.old_nic:
                pairs.append(f"{e.fact.old_nic} → {e.fact.nic}")
        hosts = _names(sorted({e.host for e in renamed if e.host}))
        found.append(f"The interfaces of {hosts} came back under new names "
                     f"({', '.join(pairs)}): ringfence found them by MAC address, nothing to "
                     f"reconfigure in ringfence. Make sure the host's own network configuration "
                     f"(bonds, bridges, VLANs) also matches interfaces by MAC or uses persistent "
                     f"names.")
    watchdog = [v for v in incident.vms if v.fence_path == "watchdog" and not v.moved_live]
    if watchdog:
        hosts = _names(sorted({v.from_host for v in watchdog if v.from_host}))
        worst = max(v.downtime_s for v in watchdog)
        vms = _names(sorted(v.vm for v in watchdog))
        found.append(f"Recovery from {hosts} took the watchdog path ({vms} down up to "
                     f"{fmt_duration(worst)}): add a power fence agent for {hosts} "
                     f"(IPMI, Redfish, a switched PDU); recovery then waits for the agent "
                     f"instead of the lease expiry and the watchdog deadline.")
    for event in incident.events:
        if event.kind == "fence_agent_failed":
            found.append(f"The fence agent for {event.host} failed ({event.text}): check the "
                         f"fence device (address, credentials, its own power and network "
                         f"path); ringfence fell back to the slower watchdog path.")
            break
    unverified = [v.vm for v in incident.vms if v.verification == "pending" and not v.still_down]
    if unverified:
        found.append(f"{_names(unverified)} {'was' if len(unverified) == 1 else 'were'} "
                     f"restarted but never verified: add a verify check (verify: tcp, icmp or "
                     f"guest_agent in the cluster file) so that ringfence can tell that "
                     f"{'it answers' if len(unverified) == 1 else 'they answer'}.")
    failed_checks = [v.vm for v in incident.vms if v.verification == "failed"]
    if failed_checks:
        found.append(f"{_names(failed_checks)} runs but does not answer its check: look at the "
                     f"guest (console, its volumes, its network) on its new host.")
    crashes: dict[str, int] = {}
    for event in incident.events:
        if event.kind == "vm_crashed" and event.vm:
            crashes[event.vm] = crashes.get(event.vm, 0) + 1
    for vm, count in sorted(crashes.items()):
        if count > 1 or vm in incident.waiting:
            found.append(f"{vm} crashed {_plural(count, 'time')}: the cause is inside the guest "
                         f"or its volumes; look at its logs before starting it again.")
    homeless = [vm for vm in incident.waiting
                if not any(e.kind == "vm_failed" and e.vm == vm for e in incident.events)]
    if homeless:
        found.append(f"{_names(homeless)} had no place to run: add capacity, or review "
                     f"policy.host_failures_to_tolerate and the anti-affinity groups.")
    self_fenced = sorted({e.host for e in incident.events if e.kind == "self_fence" and e.host})
    if len(self_fenced) >= 2 and ctx.config is not None and not ctx.config.witnesses:
        found.append(f"{_names(self_fenced)} all fenced themselves because none of them could "
                     f"reach a store majority: add a witness (a store member on a third site, "
                     f"'quorum server') so that one side keeps its VMs running.")
    if any(e.kind == "preexisting_split_brain" for e in incident.events):
        found.append("Two histories of a VM diverged (a forced start while its lease holder was "
                     "alive): compare the evidence shown (writes since the split, last token) "
                     "before choosing which data to keep.")
    found += _lost_hosts(incident)
    if not found:
        found.append("No change recommended: the journal shows nothing that a configuration or "
                     "hardware change would have avoided.")
    return found


def _lost_hosts(incident: Incident) -> list[str]:
    """A host that was fenced or cut off: find out why, and bring it back or replace it."""
    found = []
    for cause in root_causes(incident):
        host = cause.host
        if host is None or cause.category not in ("power_or_nics", "hang", "network"):
            continue
        where = {"power_or_nics": "its BMC event log (IPMI SEL, Redfish), its console and its "
                                  "power feeds",
                 "hang": "its kernel log and console from before the reset (a hung host)",
                 "network": "its cables, transceivers, switch ports and NIC firmware"}
        joined = any(e.kind == "host_joined" and e.host == host for e in incident.events)
        back = ("it has rejoined the cluster" if joined else
                "until it rejoins (by itself, at its next boot) the cluster runs without it: "
                "check that the remaining hosts still have room for a further failure")
        found.append(f"Find out why {host} failed: look at {where[cause.category]}; {back}.")
    return found


def _shared_fate(incident: Incident, ctx: ReportContext) -> list[str]:
    """Seed 001: the monitoring and the ticketing VMs ran on the host that failed."""
    found: list[str] = []
    by_host: dict[str, list[str]] = {}
    for v in incident.vms:
        if v.from_host and not v.moved_live and ALERTING_VM.search(v.vm):
            by_host.setdefault(v.from_host, []).append(v.vm)
    for host, vms in sorted(by_host.items()):
        if len(vms) < 2:
            continue
        grouped: list[str] = []
        if ctx.config is not None:
            for group in ctx.config.groups:
                if group.rule == "anti_affinity":
                    inside = sorted(set(group.vms) & set(vms))
                    if inside:
                        grouped.append(f"{_names(inside)} in anti-affinity group {group.name}")
        note = f" (already: {'; '.join(grouped)})" if grouped else ""
        found.append(f"Monitoring/alerting VMs {_names(sorted(vms))} shared host {host} and "
                     f"went down together{note}: put every monitoring, alerting and ticketing "
                     f"VM in one anti-affinity group, and let the monitors watch each other.")
    return found


