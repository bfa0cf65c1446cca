"""The post-incident report, as Markdown and as one self-contained HTML page.

Both formats are rendered from one list of sections (:func:`report_sections`), so they always
say the same thing: summary, customer impact (every VM, its downtime, where it ran before and
after), timeline, detection, fencing, recovery, verification, root-cause evidence (which NIC
lost carrier and when, corrected memory errors, storage probe errors, renamed interfaces with
their old and new names), operator actions (forced starts with the operator's name), and
recommendations derived from that evidence (:func:`recommendations`).

Decided here:

- Times are ``t+12.3s`` for a simulation (seconds from the start of the run) and UTC wall-clock
  times for real journals (:class:`ReportContext` says which).
- A downtime that nobody observed exactly (a host lost with no surviving peer to see it) is
  shown as an upper bound (``≤``) with the interval in which the VM stopped.
- An incident resolved without verification says so in capitals, in the summary and in the
  verification section; so does an open incident.
- The HTML page needs nothing from outside: inline CSS (with print rules: A4, no backgrounds
  needed, sections kept together), an inline SVG chart of hosts and VMs over the incident with
  fault and recovery markers, no JavaScript, no web fonts, an empty inline favicon.

Rendering never raises for a well-formed :class:`Incident`; writing files raises ``OSError``
as the file system does.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ringfence.journal.events import Event
from ringfence.journal.incidents import (
    FAILURE_KINDS,
    SIGNS_JOURNAL,
    WARNING_KINDS,
    Evidence,
    Incident,
    VmImpact,
)

if TYPE_CHECKING:
    from ringfence.config import ClusterConfig
    from ringfence.sim.runner import SimulationResult

__all__ = [
    "IncidentSource",
    "ReportContext",
    "Section",
    "context_for_simulation",
    "find_incident",
    "fmt_duration",
    "fmt_time",
    "incidents_of_simulation",
    "load_source",
    "recommendations",
    "render_html",
    "render_index_html",
    "render_index_markdown",
    "render_markdown",
    "report_sections",
    "write_reports",
]

# Names that mark a VM as part of the alerting path (seed 001: the monitoring and the ticketing
# system ran on the host that failed, so nobody was told).
ALERTING_VM = re.compile(
    r"mon|nagios|icinga|zabbix|prometheus|alertmanager|grafana|alert|ticket|helpdesk|"
    r"support|pager|oncall|phabricator|jira|otrs", re.IGNORECASE)

# Words of an operating system's or storage client's error that mean "not allowed".
_AUTH_ERROR = re.compile(r"permission|denied|EACCES|EPERM|auth", re.IGNORECASE)


@dataclass(frozen=True)
class ReportContext:
    """What a report needs beyond the incident: how to show times, where the events came
    from, and (optionally) the cluster file, other incidents, and extra sections."""

    cluster: str = "cluster"
    simulated: bool = False
    source: str = ""
    description: str | None = None
    config: ClusterConfig | None = None
    incidents: Sequence[Incident] = ()
    extra: Sequence[tuple[str, Sequence[str]]] = ()  # (heading, paragraphs) after the summary


# ====================================================================== formatting
def fmt_time(t: float, ctx: ReportContext, *, date: bool = True) -> str:
    """``t+200.1s`` (simulation) or ``2026-05-01 12:00:03.4 UTC`` (real journals)."""
    if ctx.simulated:
        return f"t+{t:.1f}s"
    moment = datetime.fromtimestamp(t, UTC)
    clock = moment.strftime("%H:%M:%S") + f".{int(moment.microsecond / 100000)}"
    return f"{moment:%Y-%m-%d} {clock} UTC" if date else clock


def fmt_duration(seconds: float) -> str:
    """``0.13 s``, ``6.5 s``, ``2 min 05 s``, ``1 h 02 min``."""
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{seconds:.2f} s"
    if seconds < 60.0:
        return f"{seconds:.1f} s"
    if seconds < 3600.0:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours} h {rest:02d} min"


def _names(items: Sequence[str]) -> str:
    if len(items) > 1:
        return f"{', '.join(items[:-1])} and {items[-1]}"
    return items[0] if items else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ====================================================================== sections
@dataclass(frozen=True)
class Para:
    text: str
    loud: bool = False  # a warning box in HTML, bold in Markdown


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Chart:
    """Placeholder for the SVG timeline (HTML only)."""


Block = Para | Bullets | Table | Chart


@dataclass(frozen=True)
class Section:
    key: str
    heading: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


def _nic_of(e: Evidence) -> str | None:
    """'eth1 (storage)': the NIC and its network, from a carrier event's fields."""
    if e.fact.nic is None:
        return None
    return f"{e.fact.nic} ({e.fact.network})" if e.fact.network else e.fact.nic


def _first_of(incident: Incident, kinds: set[str] | frozenset[str],
              host: str | None = None) -> Event | None:
    for e in incident.events:
        if e.kind in kinds and (host is None or e.host == host):
            return e
    return None


def _downtime_cell(v: VmImpact) -> str:
    text = fmt_duration(v.downtime_s)
    if v.moved_live:
        return "none (live migration)"
    if any(o.uncertain for o in v.outages):
        text = f"≤ {text}"
    if v.still_down:
        text += " (still down)"
    return text


def _verification_cell(v: VmImpact, ctx: ReportContext) -> str:
    if v.verification == "verified" and v.verified_at is not None:
        return f"answers since {fmt_time(v.verified_at, ctx, date=False)}"
    if v.verification == "failed":
        return "FAILED: does not answer"
    if v.still_down:
        return "—"
    return "NOT VERIFIED"


# Events worth a sentence of their own in the summary (their journal text says it all).
_STORY_KINDS = frozenset({
    "host_shutdown", "storage_unwritable", "memory_errors", "link_flapping", "watchdog_reset",
    "fence_agent_failed", "force_start", "force_start_refused", "vm_failed", "vm_pending",
    "reboot_overdue", "preexisting_split_brain", "failsafe_entered", "vm_verify_failed",
})


def _opening(incident: Incident) -> Event | None:
    """The event to tell first: the incident's opener if it is about one of its hosts, else
    the first fault signal about one of them."""
    if not incident.events:
        return None
    opener = incident.events[0]
    if opener.host in incident.hosts or not incident.hosts:
        return opener
    return next((e for e in incident.events if e.host in incident.hosts
                 and (e.kind in FAILURE_KINDS or e.kind in WARNING_KINDS)), opener)


def _summary(incident: Incident, ctx: ReportContext) -> list[Block]:
    blocks: list[Block] = []
    first = _opening(incident)
    sentences: list[str] = []
    if first is not None:
        sentences.append(f"The first signal{' about ' + first.host if first.host else ''} "
                         f"came at {fmt_time(first.t, ctx)}: {first.text}.")
    isolated = [o for v in incident.vms for o in v.outages if o.isolated_at is not None]
    if isolated:
        hosts = _names(sorted({o.from_host for o in isolated if o.from_host}))
        sentences.append(f"The VMs on {hosts} kept running but were cut off from the network "
                         f"until {hosts} was fenced.")
    died = [o for v in incident.vms for o in v.outages
            if not o.live and not o.exact and o.isolated_at is None]
    for host in sorted({o.from_host for o in died if o.from_host}):
        mine = [o for o in died if o.from_host == host]
        names = _names(sorted({o.vm for o in mine}))
        if all(not o.uncertain for o in mine):
            sentences.append(f"{host} was last heard at {fmt_time(mine[0].down_at, ctx)}; "
                             f"{names} stopped with it.")
        else:
            sentences.append(f"No surviving host saw {host} go: {names} stopped between "
                             f"{fmt_time(min(o.down_earliest for o in mine), ctx)} and "
                             f"{fmt_time(max(o.down_latest for o in mine), ctx)}.")
    said: set[tuple[str, str | None]] = {(first.kind, first.host)} if first else set()
    for e in incident.events:
        if (e.kind, e.host) in said:
            continue
        if e.kind == "host_fenced" and e.host:
            said.add((e.kind, e.host))
            method = "its watchdog" if e.fact.method == "watchdog" else "its fence agent"
            sentences.append(f"{e.host} was fenced through {method} at {fmt_time(e.t, ctx)}, "
                             f"{fmt_duration(e.t - incident.opened_at)} after the incident "
                             f"opened.")
        elif e.kind == "self_fence" and e.host:
            said.add((e.kind, e.host))
            sentences.append(f"{e.host} fenced itself at {fmt_time(e.t, ctx)} ({e.text}).")
        elif e.kind in _STORY_KINDS and (e.host in incident.hosts or e.host is None
                                         or e.vm is not None):
            said.add((e.kind, e.host))
            sentences.append(f"At {fmt_time(e.t, ctx)}: {e.text}.")
    restarted = [v for v in incident.vms if not v.moved_live and not v.still_down]
    moved = [v for v in incident.vms if v.moved_live]
    if restarted:
        worst = max(v.downtime_s for v in restarted)
        interrupted = max(v.interrupted_s for v in restarted)
        bound = "at most " if any(o.uncertain for v in restarted for o in v.outages) else ""
        targets: dict[str, list[str]] = {}
        for v in restarted:
            place = f"on {v.to_host}" if v.to_host != v.from_host else f"in place on {v.to_host}"
            targets.setdefault(place, []).append(v.vm)
        where = [f"{_names(vms)} {place}" for place, vms in targets.items()]
        sentences.append(
            f"ringfence restarted {_names(where)}; "
            f"{'it was' if len(restarted) == 1 else 'each was'} stopped for "
            f"{bound or ('up to ' if len(restarted) > 1 else '')}"
            f"{fmt_duration(worst)}" + (
                f", and service was interrupted for up to {fmt_duration(interrupted)} (from the "
                f"moment it was cut off or stopped until it answered its check)"
                if interrupted > worst + 0.05 else "") + ".")
    if moved:
        goes: dict[str, list[str]] = {}
        for v in moved:
            goes.setdefault(v.to_host or "?", []).append(v.vm)
        where = [f"{_names(vms)} to {host}" for host, vms in goes.items()]
        sentences.append(f"ringfence moved {_names(where)} by live migration, with no "
                         f"downtime.")
    down = [v.vm for v in incident.vms if v.still_down] + [
        vm for vm in incident.waiting if vm not in {v.vm for v in incident.vms}]
    if down:
        sentences.append(f"{_names(sorted(set(down)))} "
                         f"{'is' if len(set(down)) == 1 else 'are'} still down.")
    earlier = [e for e in incident.evidence if e.before]
    if earlier:
        kinds = sorted({e.kind for e in earlier})
        sentences.append(f"Before this incident the journal already showed "
                         f"{_plural(len(earlier), 'early sign')} on "
                         f"{_names(sorted({e.host or '?' for e in earlier}))} "
                         f"({', '.join(k.replace('_', ' ') for k in kinds)}): see the "
                         f"root-cause evidence.")
    blocks.append(Para(" ".join(sentences) or "No event."))
    blocks.append(_resolution_para(incident, ctx))
    return blocks


def _resolution_para(incident: Incident, ctx: ReportContext) -> Para:
    if incident.resolution == "verified" and incident.resolved_at is not None:
        what = ("every affected VM answered its check" if incident.vms else
                f"{_names(list(incident.hosts)) or 'the cluster'} passes its checks again")
        return Para(f"Resolved at {fmt_time(incident.resolved_at, ctx)}, "
                    f"{fmt_duration(incident.resolved_at - incident.opened_at)} after it "
                    f"opened: {what}.")
    if incident.resolution == "unverified" and incident.resolved_at is not None:
        pending = [v.vm for v in incident.vms if v.verification != "verified"]
        return Para(f"RESOLVED WITHOUT VERIFICATION at {fmt_time(incident.resolved_at, ctx)}: "
                    f"{_names(pending)} {'runs' if len(pending) == 1 else 'run'} again, but no "
                    f"check confirmed that {'it answers' if len(pending) == 1 else 'they answer'}"
                    f". Check by hand, and configure a verify check.", loud=True)
    if incident.resolution == "escalated":
        later = incident.superseded_by or "a later incident"
        when = (f" at {fmt_time(incident.resolved_at, ctx)}"
                if incident.resolved_at is not None else "")
        return Para(f"This early warning escalated into {later}{when}: the failure it warned "
                    f"of is handled there.", loud=True)
    reasons = []
    failed = [v.vm for v in incident.vms if v.verification == "failed"]
    down = sorted({v.vm for v in incident.vms if v.still_down} | set(incident.waiting))
    if down:
        reasons.append(f"{_names(down)} {'is' if len(down) == 1 else 'are'} still down")
    if failed:
        reasons.append(f"{_names(failed)} {'does' if len(failed) == 1 else 'do'} not answer "
                       f"{'its check' if len(failed) == 1 else 'their checks'}")
    if not reasons:
        reasons.append(f"{_names(list(incident.hosts)) or 'a host'} has not passed its checks "
                       f"again")
    return Para(f"STILL OPEN at {fmt_time(incident.stream_end, ctx)}: {'; '.join(reasons)}.",
                loud=True)


def _impact(incident: Incident, ctx: ReportContext) -> list[Block]:
    if not incident.vms and not incident.waiting:
        return [Para("No VM was stopped or moved.")]
    blocks: list[Block] = []
    if incident.vms:
        rows = []
        for v in incident.vms:
            rows.append((
                v.vm, v.from_host or "?", v.to_host or "—",
                fmt_time(v.down_at, ctx, date=False),
                fmt_time(v.back_at, ctx, date=False) if v.back_at is not None else "—",
                _downtime_cell(v),
                fmt_duration(v.interrupted_s) if not v.moved_live else "none",
                v.fence_path or "—", _verification_cell(v, ctx)))
        blocks.append(Table(("VM", "ran on", "runs on", "stopped", "running again", "downtime",
                             "interrupted", "fence path", "check"), tuple(rows)))
        total = sum(v.downtime_s for v in incident.vms)
        stopped = [v for v in incident.vms if not v.moved_live]
        bound = "≤ " if any(o.uncertain for v in incident.vms for o in v.outages) else ""
        sources = sorted({v.downtime_source for v in stopped}) or [SIGNS_JOURNAL]
        text = (f"{_plural(len(incident.vms), 'VM')} affected, "
                f"{len(stopped)} of them stopped; total downtime {bound}{fmt_duration(total)}. "
                f"Downtime runs from a VM's last sign of life on the host it left to its first "
                f"on the host it came back on, measured from {' and '.join(sources)}; "
                f"'interrupted' counts from the moment it was cut off from the network (or "
                f"stopped) until it answered its check.")
        blocks.append(Para(text))
        for v in incident.vms:
            for o in v.outages:
                if o.uncertain:
                    blocks.append(Para(
                        f"{v.vm}: nobody observed when it stopped on {o.from_host} (no surviving "
                        f"host saw it go); it stopped between "
                        f"{fmt_time(o.down_earliest, ctx, date=False)} and "
                        f"{fmt_time(o.down_latest, ctx, date=False)}, so the downtime shown is "
                        f"an upper bound."))
    if incident.waiting:
        blocks.append(Para(f"Without a place to run: {_names(list(incident.waiting))}.",
                           loud=True))
    if ctx.config is not None:
        affected = {v.vm for v in incident.vms} | set(incident.waiting)
        others = sorted(vm.name for vm in ctx.config.vms if vm.name not in affected)
        if others:
            blocks.append(Para(f"Not affected: {', '.join(others)}."))
    return blocks


def _timeline(incident: Incident, ctx: ReportContext) -> list[Block]:
    rows = []
    for e in incident.events:
        text = e.text
        others = [b for b, _ in e.also if b]
        if others:
            text += f" (also reported by {_names(sorted(set(others)))})"
        rows.append((fmt_time(e.t, ctx, date=False), e.host or "", e.vm or "", e.kind, text))
    zone = "simulated seconds from the start of the run" if ctx.simulated else "UTC"
    return [Chart(), Para(f"Times are {zone}. Every event the journal holds for this incident:"),
            Table(("time", "host", "VM", "event", "detail"), tuple(rows))]


def _detection(incident: Incident, ctx: ReportContext) -> list[Block]:
    items: list[str] = []
    first = _opening(incident)
    if first is not None:
        items.append(f"First signal at {fmt_time(first.t, ctx)}: {first.kind} — {first.text}.")
    lost: dict[str, list[Event]] = {}
    for e in incident.events:
        if e.kind == "heartbeat_lost" and e.host in incident.hosts:
            lost.setdefault(e.host, []).append(e)
    for host, events in sorted(lost.items()):
        observers = sorted({name for e in events for name in e.observers})
        gap = events[0].duration
        items.append(f"{_names(observers) or 'Its peers'} stopped hearing {host} at "
                     f"{fmt_time(events[0].t, ctx)}"
                     + (f" (no heartbeat for {gap:g} s on any link)" if gap is not None else "")
                     + ".")
    for e in incident.events:
        if e.kind == "host_suspect":
            items.append(f"The leader suspected {e.host} at {fmt_time(e.t, ctx)}, "
                         f"{fmt_duration(e.t - incident.opened_at)} after the first signal "
                         f"({e.text}).")
    alert = _first_of(incident, {"alert_sent"})
    if alert is not None:
        items.append(f"First alert at {fmt_time(alert.t, ctx)}, "
                     f"{fmt_duration(alert.t - incident.opened_at)} after the first signal: "
                     f"{alert.text}.")
    else:
        items.append("No alert was journaled for this incident.")
    return [Bullets(tuple(items))]


_FENCE_KINDS = frozenset({"fence_started", "fence_agent_ok", "fence_agent_failed", "host_fenced",
                          "self_fence", "watchdog_reset", "lease_expired"})


def _fencing(incident: Incident, ctx: ReportContext) -> list[Block]:
    items = [f"{fmt_time(e.t, ctx)} {e.kind.replace('_', ' ')}: {e.text}"
             for e in incident.events if e.kind in _FENCE_KINDS]
    blocks: list[Block] = []
    if items:
        blocks.append(Bullets(tuple(items)))
    else:
        blocks.append(Para("No host had to be fenced."))
    paths: dict[str, list[str]] = {}
    for v in incident.vms:
        if v.fence_path:
            paths.setdefault(v.fence_path, []).append(v.vm)
    for path, vms in sorted(paths.items()):
        meaning = {
            "fence agent": "a fence agent confirmed the old host powered off",
            "watchdog": "the old host's lease expired and its watchdog deadline passed",
            "self-fence": "the old host destroyed its VMs itself and its watchdog reset it",
            "clean shutdown": "the old host stopped the VM cleanly and released it",
        }[path]
        blocks.append(Para(f"{_names(vms)}: restarted after the {path} path ({meaning})."))
    return blocks


_RECOVERY_KINDS = frozenset({"vm_recovered", "vm_started", "vm_restarted", "vm_migrating",
                             "vm_migrated", "vm_released", "vm_pending", "vm_failed",
                             "force_start", "vm_start_failed"})
_RETURN_KINDS = frozenset({"host_joined", "quorum_gained", "waiting_for_quorum", "host_ineligible",
                           "link_down", "link_up",
                           "host_healthy", "nic_renamed", "storage_unwritable",
                           "storage_writable", "host_alive", "heartbeat_restored"})


def _recovery(incident: Incident, ctx: ReportContext) -> list[Block]:
    items = [f"{fmt_time(e.t, ctx)}: {e.text}"
             for e in incident.events if e.kind in _RECOVERY_KINDS]
    first_loss = min((e.t for e in incident.events
                      if e.kind in ("host_fenced", "self_fence", "host_shutdown",
                                    "watchdog_reset")), default=None)
    back = [f"{fmt_time(e.t, ctx)}: {e.text}" for e in incident.events
            if e.kind in _RETURN_KINDS and e.host in incident.hosts
            and first_loss is not None and e.t > first_loss]
    blocks: list[Block] = []
    blocks.append(Bullets(tuple(items)) if items else Para("No VM had to be recovered."))
    if back:
        blocks.append(Para("The hosts afterwards:"))
        blocks.append(Bullets(tuple(back)))
    return blocks


def _verification(incident: Incident, ctx: ReportContext) -> list[Block]:
    items = []
    for v in incident.vms:
        last = v.outages[-1]
        if v.verification == "verified" and v.verified_at is not None:
            after = v.verified_at - (last.back_at or v.verified_at)
            items.append(f"{v.vm} answers its check on {v.to_host} since "
                         f"{fmt_time(v.verified_at, ctx)} ({fmt_duration(after)} after it "
                         f"{'moved' if last.live else 'started'}).")
        elif v.verification == "failed":
            items.append(f"{v.vm} runs on {v.to_host} but FAILED its check.")
        elif v.still_down:
            items.append(f"{v.vm} is still down: nothing to verify"
                         + (f" ({last.note})." if last.note else "."))
        else:
            items.append(f"{v.vm} runs on {v.to_host} but was NOT VERIFIED: no check "
                         f"answered.")
    blocks: list[Block] = [Bullets(tuple(items))] if items else []
    blocks.append(_resolution_para(incident, ctx))
    return blocks


def _evidence_groups(incident: Incident, ctx: ReportContext) -> list[Block]:
    groups: list[tuple[str, Callable[[Evidence], bool]]] = [
        ("Carrier (NIC link) changes",
         lambda e: e.kind in ("link_down", "link_up", "link_flapping")),
        ("Corrected memory errors (ECC)", lambda e: e.kind == "memory_errors"),
        ("Storage probes",
         lambda e: e.kind in ("storage_unwritable", "storage_writable")),
        ("Renamed interfaces", lambda e: e.kind == "nic_renamed"),
        ("Heartbeats and quorum",
         lambda e: e.kind in ("heartbeat_lost", "jeopardy", "quorum_lost")),
        ("Host resets and shutdowns",
         lambda e: e.kind in ("self_fence", "watchdog_reset", "host_shutdown", "reboot_overdue",
                              "fence_agent_failed")),
        ("Host fitness", lambda e: e.kind in ("host_degraded", "host_ineligible")),
        ("VM crashes and checks", lambda e: e.kind in ("vm_crashed", "vm_verify_failed")),
        ("Split brain", lambda e: e.kind == "preexisting_split_brain"),
    ]
    blocks: list[Block] = []
    for heading, wanted in groups:
        found = [e for e in incident.evidence if wanted(e)]
        if not found:
            continue
        items = []
        for e in found:
            text = e.text
            if e.kind == "nic_renamed" and e.fact.nic and e.fact.old_nic:
                text = (f"{e.host}: {e.fact.network} interface {e.fact.old_nic} → "
                        f"{e.fact.nic} (MAC {e.fact.mac}); found by its MAC, nothing to "
                        f"reconfigure")
            when = "before the incident, " if e.before else ""
            items.append(f"{when}{fmt_time(e.t, ctx)}: {text}")
        blocks.append(Para(heading + ":"))
        blocks.append(Bullets(tuple(items)))
    if not blocks:
        blocks.append(Para("The journal holds no root-cause evidence for this incident."))
    return blocks


def _operator(incident: Incident, ctx: ReportContext) -> list[Block]:
    if not incident.operator_actions:
        return [Para("No operator action was recorded.")]
    items = [f"{fmt_time(a.t, ctx)} {a.operator or 'an operator'} — {a.kind.replace('_', ' ')}"
             f": {a.text}" for a in incident.operator_actions]
    return [Bullets(tuple(items))]


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
    if not found:
        found.append("No change recommended: the journal shows nothing that a configuration or "
                     "hardware change would have avoided.")
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


def report_sections(incident: Incident, ctx: ReportContext) -> list[Section]:
    """The report's sections, in order (both renderers use these)."""
    sections = [Section("summary", "Summary", tuple(_summary(incident, ctx)))]
    for heading, paragraphs in ctx.extra:
        sections.append(Section("extra", heading, tuple(Para(p) for p in paragraphs)))
    sections += [
        Section("impact", "Customer impact", tuple(_impact(incident, ctx))),
        Section("timeline", "Timeline", tuple(_timeline(incident, ctx))),
        Section("detection", "Detection", tuple(_detection(incident, ctx))),
        Section("fencing", "Fencing", tuple(_fencing(incident, ctx))),
        Section("recovery", "Recovery", tuple(_recovery(incident, ctx))),
        Section("verification", "Verification", tuple(_verification(incident, ctx))),
        Section("evidence", "Root-cause evidence", tuple(_evidence_groups(incident, ctx))),
        Section("operator", "Operator actions", tuple(_operator(incident, ctx))),
        Section("recommendations", "Recommendations",
                (Bullets(tuple(recommendations(incident, ctx))),)),
    ]
    return sections


def _status_words(incident: Incident) -> str:
    return {"open": "OPEN", "resolved": "resolved, every affected VM verified"
            if incident.vms else "resolved",
            "resolved without verification": "RESOLVED WITHOUT VERIFICATION",
            "escalated": f"escalated into {incident.superseded_by}"}[incident.status]


def _meta(incident: Incident, ctx: ReportContext) -> list[tuple[str, str]]:
    items = [("Severity", incident.severity), ("Status", _status_words(incident)),
             ("Opened", fmt_time(incident.opened_at, ctx))]
    if incident.resolved_at is not None:
        items.append(("Resolved", f"{fmt_time(incident.resolved_at, ctx)} (after "
                                  f"{fmt_duration(incident.resolved_at - incident.opened_at)})"))
    items += [("Hosts", ", ".join(incident.hosts) or "—"),
              ("Cluster", ctx.cluster)]
    if ctx.source:
        items.append(("Source", ctx.source))
    return items


# ====================================================================== Markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Para):
        return [f"**{block.text}**" if block.loud else block.text, ""]
    if isinstance(block, Bullets):
        return [*(f"- {item}" for item in block.items), ""]
    if isinstance(block, Table):
        lines = ["| " + " | ".join(block.headers) + " |",
                 "|" + "|".join("---" for _ in block.headers) + "|"]
        lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in block.rows]
        return [*lines, ""]
    return []


def render_markdown(incident: Incident, ctx: ReportContext) -> str:
    """The report as Markdown (GitHub flavour: tables)."""
    lines = [f"# {incident.id}: {incident.title}", ""]
    lines += ["  \n".join(f"**{k}:** {v}" for k, v in _meta(incident, ctx)), ""]
    if ctx.description:
        lines += [f"> {' '.join(ctx.description.split())}", ""]
    for section in report_sections(incident, ctx):
        lines += [f"## {section.heading}", ""]
        for block in section.blocks:
            lines += _md_block(block)
    return "\n".join(lines).rstrip() + "\n"


# ====================================================================== HTML
CSS = """
:root { --ink: #1d2329; --muted: #5c6670; --line: #d5dbe1; --bg: #f6f8fa;
  --critical: #b42318; --major: #b54708; --warning: #8a6d00; --ok: #067647; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 0 auto; max-width: 1100px; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.5em; line-height: 1.25; margin: 0 0 8px; }
h2 { font-size: 1.15em; margin: 28px 0 8px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
p { margin: 6px 0 10px; }
ul { margin: 4px 0 12px; padding-left: 22px; }
li { margin: 2px 0; }
.meta { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 0 0 12px; color: var(--muted);
  font-size: 0.92em; }
.meta b { color: var(--ink); font-weight: 600; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.8em;
  font-weight: 700; text-transform: uppercase; letter-spacing: 0.03em; color: #fff;
  vertical-align: middle; }
.badge.critical { background: var(--critical); } .badge.major { background: var(--major); }
.badge.warning { background: var(--warning); } .badge.ok { background: var(--ok); }
.loud { border-left: 5px solid var(--critical); background: #fef3f2; padding: 8px 12px;
  font-weight: 600; }
.description { color: var(--muted); border-left: 3px solid var(--line); padding-left: 10px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 0.88em; }
th, td { text-align: left; vertical-align: top; padding: 4px 8px;
  border-bottom: 1px solid var(--line); }
th { background: var(--bg); font-weight: 600; white-space: nowrap; }
td.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
td.kind { white-space: nowrap; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace;
  font-size: 0.95em; }
.chart { margin: 8px 0 14px; border: 1px solid var(--line); border-radius: 6px; padding: 6px; }
.chart svg { display: block; width: 100%; height: auto; }
footer { margin-top: 32px; color: var(--muted); font-size: 0.85em; }
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  body { font-size: 10pt; max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  section { break-inside: auto; }
  tr, li, .chart, .loud { break-inside: avoid; }
  .badge { color: #000; border: 1px solid #000; background: none !important; }
  .loud { background: none; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_block(block: Block, incident: Incident, ctx: ReportContext) -> str:
    if isinstance(block, Para):
        return f'<p class="loud">{_e(block.text)}</p>' if block.loud else f"<p>{_e(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_e(h)}</th>" for h in block.headers)
        classes = ["time" if h in ("time", "stopped", "running again") else
                   "kind" if h == "event" else "" for h in block.headers]
        body = "".join(
            "<tr>" + "".join(f'<td class="{c}">{_e(v)}</td>' if c else f"<td>{_e(v)}</td>"
                             for c, v in zip(classes, row, strict=True)) + "</tr>"
            for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="chart">{timeline_svg(incident, ctx)}</div>'


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            "</body></html>\n")


def render_html(incident: Incident, ctx: ReportContext) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    badge = f'<span class="badge {incident.severity}">{_e(incident.severity)}</span>'
    meta = "".join(f"<span><b>{_e(k)}:</b> {_e(v)}</span>" for k, v in _meta(incident, ctx))
    parts = [f"<header><h1>{badge} {_e(incident.id)}: {_e(incident.title)}</h1>"
             f'<div class="meta">{meta}</div>']
    if ctx.description:
        parts.append(f'<p class="description">{_e(" ".join(ctx.description.split()))}</p>')
    parts.append("</header>")
    for section in report_sections(incident, ctx):
        inner = "".join(_html_block(b, incident, ctx) for b in section.blocks)
        parts.append(f'<section id="{section.key}"><h2>{_e(section.heading)}</h2>{inner}'
                     f"</section>")
    parts.append(f"<footer>ringfence incident report · {_e(incident.id)} · "
                 f"{_e(ctx.source or ctx.cluster)}</footer>")
    return _page(f"{incident.id}: {incident.title}", "\n".join(parts))


# ---------------------------------------------------------------------- the SVG chart
_HOST_COLOURS = ("#2e6fbf", "#0f8b8d", "#7b4fb5", "#b0578d", "#4d7c0f", "#a15c07", "#3f5870",
                 "#6d6a00")
_FAULT_MARK = FAILURE_KINDS | WARNING_KINDS
_RECOVERY_MARK = frozenset({"host_healthy", "storage_writable", "link_up", "quorum_gained",
                            "host_joined", "host_alive", "heartbeat_restored"})
_DOWN_KINDS = frozenset({"host_fenced", "fence_agent_ok", "watchdog_reset", "self_fence",
                         "host_shutdown"})


def _nice_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                 14400, 43200, 86400):
        if span / step <= 8:
            return float(step)
    return 86400.0 * math.ceil(span / 86400.0 / 8)


def _host_bands(host: str, incident: Incident, t0: float, t1: float
                ) -> list[tuple[float, float, str]]:
    """(from, to, state) for a host lane: ok, trouble (a fault signal), down (fenced)."""
    bands: list[tuple[float, float, str]] = []
    state, since = "ok", t0
    for e in incident.events:
        if e.host != host:
            continue
        new = state
        if e.kind in _DOWN_KINDS:
            new = "down"
        elif e.kind == "host_joined" or (e.kind == "quorum_gained" and state != "down") or (
                e.kind in ("host_healthy", "host_alive") and state != "down"):
            new = "ok"
        elif state == "ok" and e.kind in _FAULT_MARK and (
                e.kind != "heartbeat_lost" or e.host in incident.hosts):
            new = "trouble"
        elif e.kind in ("link_up", "storage_writable") and state == "trouble":
            new = "ok"
        if new != state:
            bands.append((since, e.t, state))
            state, since = new, e.t
    bands.append((since, t1, state))
    return [(a, b, s) for a, b, s in bands if b > a]


def timeline_svg(incident: Incident, ctx: ReportContext) -> str:
    """An inline SVG chart: one lane per host (state bands, fault and recovery markers) and
    per affected VM (where it ran, when it was down, when it answered its check)."""
    times = [e.t for e in incident.events] + [v.down_at for v in incident.vms]
    times += [t for v in incident.vms for t in (v.back_at, v.verified_at) if t is not None]
    if incident.resolved_at is not None:
        times.append(incident.resolved_at)
    lo, hi = min(times, default=incident.opened_at), max(times, default=incident.opened_at)
    span = max(hi - lo, 1.0)
    t0, t1 = lo - span * 0.04, hi + span * 0.06
    hosts = list(incident.hosts)
    for v in incident.vms:
        for o in v.outages:
            for h in (o.from_host, o.to_host):
                if h and h not in hosts:
                    hosts.append(h)
    colour = {h: _HOST_COLOURS[i % len(_HOST_COLOURS)] for i, h in enumerate(hosts)}
    width, left, right, top, lane, gap = 1000, 130, 16, 30, 24, 8
    lanes = len(hosts) + len(incident.vms)
    height = top + lanes * (lane + gap) + 62
    inner = width - left - right

    def x(t: float) -> float:
        return round(left + (t - t0) / (t1 - t0) * inner, 1)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-labelledby="chart-title" font-size="12" '
           f'font-family="system-ui, sans-serif">',
           f'<title id="chart-title">{_e(incident.id)}: hosts and VMs over time</title>',
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde2e0"/>'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#b42318" stroke-width="2"/></pattern>'
           '</defs>']
    step = _nice_step(t1 - t0)
    tick = math.ceil(t0 / step) * step
    while tick <= t1:
        label = f"t+{tick:g}s" if ctx.simulated else datetime.fromtimestamp(
            tick, UTC).strftime("%H:%M:%S")
        out.append(f'<line x1="{x(tick)}" y1="{top - 6}" x2="{x(tick)}" '
                   f'y2="{height - 58}" stroke="#e3e7eb"/>'
                   f'<text x="{x(tick)}" y="{top - 12}" text-anchor="middle" '
                   f'fill="#5c6670">{_e(label)}</text>')
        tick += step
    y = top
    band_fill = {"ok": "#e7f4ec", "trouble": "#fdebc8", "down": "#f3c1bd"}
    for host in hosts:
        out.append(f'<text x="{left - 8}" y="{y + lane * 0.68}" text-anchor="end" '
                   f'font-weight="600">{_e(host)}</text>')
        for a, b, state in _host_bands(host, incident, t0, t1):
            out.append(f'<rect x="{x(a)}" y="{y}" width="{max(0.5, x(b) - x(a))}" '
                       f'height="{lane}" fill="{band_fill[state]}"><title>{_e(host)}: '
                       f'{_e(state)}</title></rect>')
        out.append(f'<rect x="{left}" y="{y}" width="{inner}" height="{lane}" fill="none" '
                   f'stroke="{colour[host]}" stroke-width="1.5"/>')
        for e in incident.events:
            if e.host != host:
                continue
            cx = x(e.t)
            if e.kind in _DOWN_KINDS:
                out.append(f'<rect x="{cx - 5}" y="{y + lane / 2 - 5}" width="10" height="10" '
                           f'fill="#1d2329" transform="rotate(45 {cx} {y + lane / 2})">'
                           f'<title>{_e(e.kind)}: {_e(e.text)}</title></rect>')
            elif e.kind in _FAULT_MARK and (host in incident.hosts
                                            or e.kind != "heartbeat_lost"):
                out.append(f'<path d="M{cx} {y + 4} l6 12 h-12 z" fill="#b42318">'
                           f'<title>{_e(e.kind)}: {_e(e.text)}</title></path>')
            elif e.kind in _RECOVERY_MARK and (e.by == host or e.kind != "heartbeat_restored"):
                out.append(f'<circle cx="{cx}" cy="{y + lane / 2}" r="5" fill="#067647">'
                           f'<title>{_e(e.kind)}: {_e(e.text)}</title></circle>')
        y += lane + gap
    for v in incident.vms:
        out.append(f'<text x="{left - 8}" y="{y + lane * 0.68}" text-anchor="end">'
                   f'{_e(v.vm)}</text>')
        cursor, where = t0, v.from_host
        for o in v.outages:
            if where and o.down_at > cursor:
                out.append(_run_rect(x(cursor), x(o.down_at), y, lane, where, colour))
            if o.isolated_at is not None and o.down_at > o.isolated_at:
                out.append(f'<rect x="{x(o.isolated_at)}" y="{y}" '
                           f'width="{max(1.5, x(o.down_at) - x(o.isolated_at))}" '
                           f'height="{lane}" fill="#f79009"><title>{_e(v.vm)} runs on '
                           f'{_e(o.from_host or "?")} but is cut off from the network</title>'
                           f'</rect>')
            if not o.live:
                end = o.back_at if o.back_at is not None else t1
                fill = "url(#hatch)" if o.uncertain else "#d92d20"
                out.append(f'<rect x="{x(o.down_at)}" y="{y}" '
                           f'width="{max(1.5, x(end) - x(o.down_at))}" height="{lane}" '
                           f'fill="{fill}"><title>{_e(v.vm)} down: {_e(o.cause)}</title></rect>')
            cursor, where = (o.back_at if o.back_at is not None else t1), o.to_host
        if where and cursor < t1:
            out.append(_run_rect(x(cursor), x(t1), y, lane, where, colour))
        for o in v.outages:
            if o.verified_at is not None:
                cx = x(o.verified_at)
                out.append(f'<circle cx="{cx}" cy="{y + lane / 2}" r="6" fill="#fff" '
                           f'stroke="#067647" stroke-width="2.5"><title>{_e(v.vm)} answers its '
                           f'check</title></circle><path d="M{cx - 3} {y + lane / 2} l2 3 l4 -6" '
                           f'fill="none" stroke="#067647" stroke-width="2"/>')
            elif o.verification == "failed" and o.back_at is not None:
                cx = x(o.back_at)
                out.append(f'<text x="{cx + 4}" y="{y + lane * 0.7}" fill="#b42318" '
                           f'font-weight="700">✗ check failed</text>')
        y += lane + gap
    rows = [
        [("#e7f4ec", "host up"), ("#fdebc8", "host in trouble"),
         ("#f3c1bd", "host fenced / down"), ("mark:fault", "fault signal"),
         ("mark:down", "fenced / reset / shut down"), ("mark:ok", "recovery")],
        [("#2e6fbf", "VM runs (on the host named)"), ("#f79009", "VM cut off from the network"),
         ("#d92d20", "VM down"), ("url(#hatch)", "VM down (time uncertain)"),
         ("mark:check", "VM answers its check")],
    ]
    ly = height - 34
    for row in rows:
        lx = 10
        for fill, label in row:
            if fill == "mark:fault":
                out.append(f'<path d="M{lx + 7} {ly - 11} l6 12 h-12 z" fill="#b42318"/>')
            elif fill == "mark:down":
                out.append(f'<rect x="{lx + 2}" y="{ly - 9}" width="9" height="9" '
                           f'fill="#1d2329" transform="rotate(45 {lx + 6.5} {ly - 4.5})"/>')
            elif fill == "mark:ok":
                out.append(f'<circle cx="{lx + 7}" cy="{ly - 4}" r="5" fill="#067647"/>')
            elif fill == "mark:check":
                out.append(f'<circle cx="{lx + 7}" cy="{ly - 4}" r="6" fill="#fff" '
                           f'stroke="#067647" stroke-width="2.5"/>')
            else:
                out.append(f'<rect x="{lx}" y="{ly - 10}" width="14" height="12" '
                           f'fill="{fill}" stroke="#8a949e" stroke-width="0.5"/>')
            out.append(f'<text x="{lx + 19}" y="{ly}" fill="#3b444d">{_e(label)}</text>')
            lx += 34 + round(6.2 * len(label))
        ly += 20
    out.append("</svg>")
    return "".join(out)


def _run_rect(a: float, b: float, y: float, lane: int, host: str,
              colour: dict[str, str]) -> str:
    fill = colour.get(host, "#3f5870")
    label = (f'<text x="{a + 6}" y="{y + lane * 0.68}" fill="#fff" font-size="11">'
             f"{_e(host)}</text>") if b - a > 8 * len(host) + 12 else ""
    return (f'<rect x="{a}" y="{y}" width="{max(0.5, b - a)}" height="{lane}" fill="{fill}" '
            f'opacity="0.85"><title>runs on {_e(host)}</title></rect>{label}')


# ====================================================================== indexes and files
def _index_rows(incidents: Sequence[Incident], ctx: ReportContext) -> list[tuple[str, ...]]:
    return [(i.id, i.severity, i.status, fmt_time(i.opened_at, ctx), i.title)
            for i in incidents]


def render_index_markdown(incidents: Sequence[Incident], ctx: ReportContext) -> str:
    lines = [f"# Incidents: {ctx.cluster}", ""]
    if ctx.source:
        lines += [f"Source: {ctx.source}", ""]
    if not incidents:
        lines += ["No incident: the journal shows no fault signal and no early warning.", ""]
        return "\n".join(lines)
    lines += _md_block(Table(("id", "severity", "status", "opened", "title"),
                             tuple(_index_rows(incidents, ctx))))
    return "\n".join(lines).rstrip() + "\n"


def render_index_html(incidents: Sequence[Incident], ctx: ReportContext) -> str:
    body = [f"<h1>Incidents: {_e(ctx.cluster)}</h1>"]
    if ctx.source:
        body.append(f'<div class="meta"><span><b>Source:</b> {_e(ctx.source)}</span></div>')
    if not incidents:
        body.append("<p>No incident: the journal shows no fault signal and no early "
                    "warning.</p>")
    else:
        rows = "".join(
            f'<tr><td><a href="{_e(i.id)}.html">{_e(i.id)}</a></td>'
            f'<td><span class="badge {i.severity}">{_e(i.severity)}</span></td>'
            f"<td>{_e(i.status)}</td><td class=\"time\">{_e(fmt_time(i.opened_at, ctx))}</td>"
            f"<td>{_e(i.title)}</td></tr>" for i in incidents)
        body.append("<table><thead><tr><th>id</th><th>severity</th><th>status</th>"
                    f"<th>opened</th><th>title</th></tr></thead><tbody>{rows}</tbody></table>")
    return _page(f"Incidents: {ctx.cluster}", "\n".join(body))


def write_reports(incidents: Sequence[Incident], ctx: ReportContext, out_dir: Path
                  ) -> list[Path]:
    """Write ``INC-NNNN.md`` and ``INC-NNNN.html`` for each incident, and ``index.md`` /
    ``index.html``, into `out_dir` (created if its parent exists; files of those names are
    replaced, each whole: see :mod:`ringfence.paths`). Returns the paths written, Markdown
    first. :class:`ringfence.errors.ConfigError` names a directory or file that can not be
    written."""
    from ringfence.paths import output_dir, write_file

    output_dir(out_dir)
    written: list[Path] = []
    for incident in incidents:
        for suffix, render in ((".md", render_markdown), (".html", render_html)):
            written.append(write_file(out_dir / f"{incident.id}{suffix}", render(incident, ctx)))
    for name, text in (("index.md", render_index_markdown(incidents, ctx)),
                       ("index.html", render_index_html(incidents, ctx))):
        written.append(write_file(out_dir / name, text))
    return written


# ====================================================================== simulations
def context_for_simulation(result: SimulationResult) -> ReportContext:
    scenario = result.scenario
    return ReportContext(
        cluster=scenario.cluster.name if scenario.cluster.name != "cluster" else scenario.name,
        simulated=True, source=f"simulation of scenario {scenario.name} (seed {result.seed})",
        description=scenario.description or None, config=result.world.config)


def incidents_of_simulation(result: SimulationResult) -> tuple[list[Incident], ReportContext]:
    """A simulated run's incidents (from its journal alone) and the context to report them."""
    from ringfence.journal.events import from_world
    from ringfence.journal.incidents import build_incidents

    incidents = build_incidents(from_world(result.world), stream_end=result.scenario.duration)
    ctx = context_for_simulation(result)
    return incidents, ReportContext(
        cluster=ctx.cluster, simulated=True, source=ctx.source, description=ctx.description,
        config=ctx.config, incidents=tuple(incidents))


# ====================================================================== sources (CLI)
DEFAULT_STATE_DIR = Path("/var/lib/ringfence")


@dataclass(frozen=True)
class IncidentSource:
    """Everything the incident commands need from one source of events."""

    events: Sequence[Event]
    incidents: Sequence[Incident]
    context: ReportContext
    hosts_state: dict[str, str]
    now: float


def load_source(*, journal: Sequence[str] | None = None, scenario: str | None = None,
                seed: int | None = None, config: str | None = None,
                now: float | None = None) -> IncidentSource:
    """Events from hosts' journals (files or state directories; default
    :data:`DEFAULT_STATE_DIR`) or from a scenario simulated on the spot, and the incidents built
    from them. `config` (a cluster file) names the cluster and its VMs in reports; `now` is
    when a journal stream ends (default: its last event). Raises :class:`ConfigError` for bad
    input (both sources given, a missing journal, an invalid file)."""
    from ringfence.errors import ConfigError
    from ringfence.journal.events import from_journal_files
    from ringfence.journal.incidents import build_incidents, final_host_states

    if journal and scenario:
        raise ConfigError("give either --journal or --scenario, not both", path="--scenario")
    if scenario:
        from ringfence.sim.runner import simulate
        from ringfence.sim.scenario import load_scenario

        result = simulate(load_scenario(scenario), seed)
        incidents, ctx = incidents_of_simulation(result)
        from ringfence.journal.events import from_world

        duration = result.scenario.duration
        states = {h.name: result.world.host_state(h.name, duration)
                  for h in result.world.config.hosts}
        return IncidentSource(from_world(result.world), incidents, ctx, states, duration)
    paths: Sequence[str] = journal or [str(DEFAULT_STATE_DIR)]
    if not journal and not DEFAULT_STATE_DIR.is_dir():
        raise ConfigError(f"no journal at {DEFAULT_STATE_DIR} (the agents' --state-dir): give "
                          f"--journal DIR|FILE or --scenario SCENARIO.yaml",
                          file=str(DEFAULT_STATE_DIR))
    source = from_journal_files(paths)
    cluster_config = None
    if config:
        from ringfence.config import load_cluster

        cluster_config = load_cluster(config)
    last = source.events[-1].t if source.events else 0.0
    end = max(last, now) if now is not None else last
    incidents = build_incidents(source.events, stream_end=end)
    names = ", ".join(str(p) for p in source.files)
    skipped = f"; {source.skipped} torn line(s) skipped" if source.skipped else ""
    ctx = ReportContext(cluster=cluster_config.name if cluster_config else "cluster",
                        simulated=False, source=f"journals {names}{skipped}",
                        config=cluster_config, incidents=tuple(incidents))
    return IncidentSource(source.events, incidents, ctx, final_host_states(source.events), end)


def find_incident(incidents: Sequence[Incident], wanted: str) -> Incident:
    """The incident called `wanted` (``INC-0002``, ``inc-2`` or ``2``); ConfigError if none."""
    from ringfence.errors import ConfigError

    text = wanted.strip().upper().removeprefix("INC-")
    for incident in incidents:
        if text.isdigit() and int(text) == int(incident.id.removeprefix("INC-")):
            return incident
    known = ", ".join(i.id for i in incidents) or "none"
    raise ConfigError(f"no incident {wanted!r}; known: {known}", path="ID")
