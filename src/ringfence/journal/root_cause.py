"""The root cause of an incident in plain words, and the paragraph a customer is sent.

Read from the incident's typed events only (never their text). Per host that the incident is
about, the strongest finding wins, in this order:

- a clean shutdown or reboot that went wrong (planned work first, then what failed after it);
- the host's own carrier probes: every heartbeat NIC lost carrier at once → the cabling, the
  switch or the NICs failed (the host itself kept running: it reported it);
- silence on every heartbeat link at once with nothing written by the host until it was fenced
  → it lost power, hung or lost all its NICs (a later `execution_gap` says it hung, a
  `watchdog_reset` that its watchdog reset it);
- the host lost the store and fenced itself; a datastore not writable; corrected memory
  errors; a VM that crashed; one heartbeat link lost (a warning).

Each finding is completed by how the host was fenced (the fence agent's method and its own
confirmation, or the watchdog rule). The customer summary names no internal host names unless
the report's context says so (`ReportContext.customer_host_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ringfence.journal.events import Event
from ringfence.journal.incident_model import Incident
from ringfence.journal.report_blocks import ReportContext, _names, fmt_duration, fmt_time

__all__ = ["Category", "Cause", "customer_summary", "participants", "root_causes"]

Category = Literal["power_or_nics", "network", "hang", "store", "storage", "memory", "vm",
                   "planned", "link", "unknown"]


@dataclass(frozen=True)
class Cause:
    """What happened to one host (or VM), in words, and its category."""

    host: str | None
    category: Category
    words: str


def participants(incident: Incident) -> tuple[str, ...]:
    """Every host that took part: the hosts it is about, and every host that journaled one of
    its events (observers, the leader that fenced, the hosts that restarted VMs)."""
    found = set(incident.hosts)
    for e in incident.events:
        found.update(name for name in (e.by, *(b for b, _ in e.also)) if name)
        if e.kind in ("vm_started", "vm_recovered", "vm_migrated") and e.host:
            found.add(e.host)
    return tuple(sorted(found))


def _fenced_words(own: Sequence[Event], host: str) -> str:
    fenced = next((e for e in own if e.kind == "host_fenced" and e.host == host), None)
    if fenced is None:
        return ""
    if fenced.fact.method == "watchdog":
        return ("; ringfence fenced it by the watchdog rule (its lease expired in the store and "
                "its watchdog deadline passed)")
    ok = next((e for e in own if e.kind == "fence_agent_ok" and e.host == host), None)
    confirmed = f", which confirmed it off ({ok.fact.detail})" if ok and ok.fact.detail \
        else (", which confirmed it off" if ok else "")
    how = "" if fenced.fact.method in (None, "fence agent") else f" ({fenced.fact.method})"
    return f"; ringfence fenced it through its fence agent{how}{confirmed}"


def _host_cause(incident: Incident, host: str) -> Cause | None:
    own = [e for e in incident.events if e.host == host or e.by == host]
    about = [e for e in own if e.host == host]
    kinds = {e.kind for e in about}
    fenced = _fenced_words(own, host)
    planned = next((e for e in about if e.kind == "host_shutdown" and e.by == host), None)
    if planned is not None and incident.vms and kinds & {"storage_unwritable", "host_ineligible",
                                                         "reboot_overdue"}:
        after = next((e for e in about if e.kind == "storage_unwritable"), None)
        what = (f"datastore {after.fact.datastore} was not writable after its boot "
                f"({after.fact.detail})" if after else "it did not come back in time")
        done = "rebooted" if planned.fact.reason == "reboot" else "shut down"
        return Cause(host, "planned", f"{host} was {done} cleanly, then {what}")
    downs = [e for e in about if e.kind == "link_down" and e.by == host
             and e.fact.cause != "none_at_start"]
    if downs:
        first = downs[0].t
        together = sorted({f"{e.fact.nic} ({e.fact.network})" for e in downs
                           if e.t - first <= 1.0})
        if len(together) >= 2 or kinds & {"host_suspect", "host_fenced", "heartbeat_lost"}:
            return Cause(host, "network", f"{host} lost carrier on {_names(together)} at once: "
                         f"its cables, the switch or its NICs failed (the host itself kept "
                         f"running and reported it){fenced}")
    lost = [e for e in about if e.kind == "heartbeat_lost"]
    if lost and (fenced or "lease_expired" in kinds):
        links = sorted({link for e in lost for link in e.fact.links})
        gap = next((e for e in about if e.kind == "execution_gap" and e.by == host), None)
        reset = "watchdog_reset" in kinds
        if gap is not None or reset:
            how = (f" for {fmt_duration(gap.fact.duration or 0.0)}" if gap else "")
            return Cause(host, "hang", f"{host} hung{how} (its agent did not run)"
                         + ("; its watchdog reset it" if reset else "") + fenced)
        return Cause(host, "power_or_nics", f"{host} stopped answering on every heartbeat link "
                     f"({', '.join(links)}) at once and wrote nothing more: it lost power, "
                     f"hung, or lost all its NICs{fenced}")
    self_fence = next((e for e in about if e.kind == "self_fence" and e.by == host), None)
    if self_fence is not None:
        why = ("its lease was gone from the store" if self_fence.fact.cause == "lease_gone"
               else "it could not reach a store majority")
        return Cause(host, "store", f"{host} fenced itself because {why}")
    storage = next((e for e in about if e.kind == "storage_unwritable"), None)
    if storage is not None:
        return Cause(host, "storage", f"datastore {storage.fact.datastore} was not writable "
                     f"from {host} ({storage.fact.detail})")
    memory = [e for e in about if e.kind == "memory_errors"]
    if memory:
        count = sum(e.fact.count or 0 for e in memory)
        return Cause(host, "memory", f"{host} reported {count} corrected memory errors: a "
                     f"memory module is failing")
    if "quorum_lost" in kinds or "failsafe_entered" in kinds:
        return Cause(host, "store", f"{host} lost the cluster store")
    if "jeopardy" in {e.kind for e in own} or "link_flapping" in kinds:
        return Cause(host, "link", f"{host} lost one of its heartbeat links (a warning: the "
                     f"others still carried its heartbeats)")
    return None


def root_causes(incident: Incident) -> tuple[Cause, ...]:
    """One cause per host the incident is about (where the journal shows one), then VM
    crashes; `unknown` when the journal shows nothing that explains it."""
    found = [c for h in incident.hosts for c in [_host_cause(incident, h)] if c is not None]
    crashed = sorted({e.vm for e in incident.events if e.kind == "vm_crashed" and e.vm})
    for vm in crashed:
        host = next((e.host for e in incident.events if e.kind == "vm_crashed" and e.vm == vm),
                    None)
        found.append(Cause(host, "vm", f"{vm} crashed on {host} (inside the guest: the host "
                           f"was fine)"))
    if not found:
        found.append(Cause(None, "unknown", "the journal shows no cause; see the timeline"))
    return tuple(found)


_CUSTOMER_WORDS: dict[Category, str] = {
    "power_or_nics": "one of our virtualization servers failed",
    "hang": "one of our virtualization servers stopped responding",
    "network": "a network failure cut one of our virtualization servers off",
    "store": "our cluster lost its coordination service",
    "storage": "a storage volume became unwritable for one of our servers",
    "memory": "one of our servers reported failing memory",
    "vm": "the virtual machine crashed",
    "planned": "planned maintenance of a server did not complete as planned",
    "link": "one of the redundant network links of a server failed",
    "unknown": "of a failure in our virtualization cluster",
}


def customer_summary(incident: Incident, ctx: ReportContext) -> str:
    """A paragraph for customers: what they noticed, why in general words, what was done."""
    causes = root_causes(incident)
    why = _CUSTOMER_WORDS[causes[0].category]
    if ctx.customer_host_names and causes[0].host:
        why += f" ({causes[0].host})"
    stopped = [v for v in incident.vms if not v.moved_live]
    if not stopped:
        moved = [v.vm for v in incident.vms if v.moved_live]
        if moved:
            return (f"On {fmt_time(incident.opened_at, ctx)}, {why}. {_names(moved)} "
                    f"{'was' if len(moved) == 1 else 'were'} moved to another server while "
                    f"running, without interruption.")
        return (f"On {fmt_time(incident.opened_at, ctx)}, {why}. No service was interrupted; "
                f"the redundancy it affected is being restored.")
    names = _names(sorted(v.vm for v in stopped))
    # What a customer noticed: from the moment the service was cut off (or stopped) until it
    # answered again, not only the time its VM was not running.
    worst = max(max(v.interrupted_s, v.downtime_s) for v in stopped)
    back = [v for v in stopped if not v.still_down]
    text = (f"On {fmt_time(min(v.down_at for v in stopped), ctx)}, {why}. "
            f"{names} {'was' if len(stopped) == 1 else 'were'} unreachable for "
            f"{'up to ' if len(stopped) > 1 else ''}{fmt_duration(worst)}.")
    if back:
        verified = all(v.verification == "verified" for v in back)
        where = "on another server" if any(v.to_host != v.from_host for v in back) \
            else "automatically"
        text += (f" {'It was' if len(back) == 1 else 'They were'} restarted {where} without "
                 f"manual intervention" + (" and checked to be answering" if verified else "")
                 + ".")
    down = [v.vm for v in stopped if v.still_down]
    if down:
        text += f" {_names(down)} {'is' if len(down) == 1 else 'are'} still being restored."
    text += " We are investigating the cause and will take the actions listed in our report."
    return text
