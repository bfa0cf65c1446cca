"""The report's sections (summary, customer impact, timeline, detection, fencing, recovery,
verification, root-cause evidence, operator actions, recommendations), as blocks that both
renderers (`journal.report_render`) turn into Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Callable

from ringfence.journal.events import Event
from ringfence.journal.incidents import (
    FAILURE_KINDS,
    SIGNS_JOURNAL,
    WARNING_KINDS,
    Evidence,
    Incident,
    VmImpact,
)
from ringfence.journal.recommendations import recommendations
from ringfence.journal.report_blocks import (
    Block,
    Bullets,
    Chart,
    Para,
    ReportContext,
    Section,
    Table,
    _names,
    _plural,
    fmt_duration,
    fmt_time,
)
from ringfence.journal.root_cause import customer_summary, root_causes


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



def report_sections(incident: Incident, ctx: ReportContext) -> list[Section]:
    """The report's sections, in order (both renderers use these)."""
    sections = [Section("summary", "Summary", tuple(_summary(incident, ctx))),
                Section("cause", "Root cause",
                        (Bullets(tuple(c.words + "." for c in root_causes(incident))),)),
                Section("customer", "Customer summary",
                        (Para(customer_summary(incident, ctx)),))]
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

