"""A static public status page: what runs now, what is wrong now, and what went wrong before.

`write_status_page` writes ``index.html`` (one self-contained page: inline CSS, no script, no
external resource; readable printed) and ``status.json`` (the same facts for machines) into a
directory, which any web server or object store can publish as it is.

Decided here:

- Plain words for people outside the team: hosts "operating normally", "taken out of service by
  the cluster"; incidents told as what customers saw (which VMs were down, for how long,
  whether they are confirmed working again), not as event kinds.
- The overall state follows the open incidents and the hosts: a VM down (an open critical
  incident) is a *service disruption*; a host out of service (an open major incident, or a
  host fenced, unfit or waiting for quorum) with every VM running is *degraded*; only early
  warnings is *operational, with warnings*; nothing of that is *all systems operational*.
- Open incidents first (newest first), then the history (newest first). An incident resolved
  without verification is shown as such, never as plainly resolved.
- Deterministic: the same inputs give the same bytes (``now`` is given, never read).

Failure semantics: ``OSError`` from creating the directory or writing the files propagates.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ringfence.journal.incidents import Incident
from ringfence.journal.report import CSS, ReportContext, fmt_duration, fmt_time

__all__ = ["HOST_WORDS", "overall_state", "public_summary", "write_status_page"]

HOST_WORDS: dict[str, str] = {
    "online": "operating normally",
    "jeopardy": "operating; one of its network links is down",
    "degraded": "operating, with early warning signs; it takes no new VMs",
    "ineligible": "running no VMs: a health check fails",
    "suspect": "not responding; the cluster is checking it",
    "fenced": "taken out of service by the cluster",
    "offline": "switched off",
    "maintenance": "under maintenance",
    "waiting_for_quorum": "waiting to rejoin the cluster",
}

_OVERALL = {
    "disruption": ("Service disruption", "Some virtual machines are down or not yet confirmed "
                                         "working."),
    "degraded": ("Degraded", "Every virtual machine runs, but part of the cluster is out of "
                             "service."),
    "warning": ("Operational, with warnings", "Everything runs; early warning signs are being "
                                              "watched."),
    "operational": ("All systems operational", "Every virtual machine runs normally."),
}


_OUT_OF_SERVICE = frozenset({"fenced", "suspect", "ineligible", "waiting_for_quorum"})


def overall_state(incidents: Sequence[Incident],
                  hosts_state: Mapping[str, str] | None = None) -> str:
    """``disruption``, ``degraded``, ``warning`` or ``operational`` (module docstring); a
    host out of service (fenced, suspect, unfit, waiting for quorum) is at least degraded."""
    open_ = [i for i in incidents if i.open]
    if any(i.severity == "critical" for i in open_):
        return "disruption"
    if any(i.severity == "major" for i in open_) or any(
            state in _OUT_OF_SERVICE for state in (hosts_state or {}).values()):
        return "degraded"
    if open_:
        return "warning"
    return "operational"


def _cause_words(incident: Incident) -> str:
    kinds = {e.kind for e in incident.events}
    hosts = ", ".join(incident.hosts)
    where = f"Host {hosts}" if len(incident.hosts) == 1 else (
        f"Hosts {hosts}" if incident.hosts else "The cluster")
    if kinds & {"link_flapping"} and not kinds & {"host_suspect", "host_fenced"}:
        return f"{where}: a network link became unstable."
    if "memory_errors" in kinds and not kinds & {"host_suspect", "host_fenced"}:
        return f"{where} reported hardware (memory) errors."
    if "link_down" in kinds and kinds & {"host_suspect", "host_fenced", "self_fence"}:
        return f"{where} lost its network connection."
    if "host_shutdown" in kinds:
        return f"{where} was restarted."
    if kinds & {"host_suspect", "host_fenced", "self_fence", "heartbeat_lost"}:
        return f"{where} stopped responding."
    if "storage_unwritable" in kinds:
        return f"{where} could not write to its storage."
    if "vm_crashed" in kinds:
        return "A virtual machine crashed."
    if "link_down" in kinds:
        return f"{where} lost a network link."
    if kinds & {"quorum_lost", "waiting_for_quorum"}:
        return f"{where} lost contact with the cluster's coordination service."
    if kinds & {"vm_pending"}:
        return "A virtual machine could not be placed on any host."
    return f"{where} had a problem."


def public_summary(incident: Incident, ctx: ReportContext) -> str:
    """What customers saw, in a few plain sentences."""
    sentences = [_cause_words(incident)]
    down = [v for v in incident.vms if v.still_down]
    moved = [v for v in incident.vms if v.moved_live]
    back = [v for v in incident.vms if not v.moved_live and not v.still_down]
    if back:
        worst = max(v.downtime_s for v in back)
        bound = "up to " if len(back) > 1 or any(o.uncertain for v in back
                                                 for o in v.outages) else ""
        confirmed = all(v.verification == "verified" for v in back)
        sentences.append(
            f"{len(back)} virtual machine{'s were' if len(back) > 1 else ' was'} restarted "
            f"after being down for {bound}{fmt_duration(worst)}"
            + ("; they are confirmed working." if confirmed and len(back) > 1 else
               "; it is confirmed working." if confirmed else
               "; they run again but are not yet confirmed working." if len(back) > 1 else
               "; it runs again but is not yet confirmed working."))
    if moved:
        sentences.append(f"{len(moved)} virtual machine{'s were' if len(moved) > 1 else ' was'} "
                         f"moved to another host before anything failed, without interruption.")
    waiting = sorted({v.vm for v in down} | set(incident.waiting))
    if waiting:
        sentences.append(f"{len(waiting)} virtual machine{'s are' if len(waiting) > 1 else ' is'}"
                         f" still down ({', '.join(waiting)}); we are working on it.")
    if not incident.vms and not incident.waiting:
        sentences.append("No virtual machine was affected.")
    if incident.resolution == "escalated" and incident.superseded_by:
        sentences.append(f"This warning led to {incident.superseded_by}.")
    return " ".join(sentences)


def _status_words(incident: Incident, ctx: ReportContext) -> str:
    if incident.resolution is None:
        return f"ongoing since {fmt_time(incident.opened_at, ctx)}"
    if incident.resolved_at is None:
        return incident.status
    took = fmt_duration(incident.resolved_at - incident.opened_at)
    return {
        "verified": f"resolved at {fmt_time(incident.resolved_at, ctx)} (after {took})",
        "unverified": f"resolved at {fmt_time(incident.resolved_at, ctx)} (after {took}), "
                      f"NOT VERIFIED by a check",
        "escalated": f"superseded at {fmt_time(incident.resolved_at, ctx)}",
    }[incident.resolution]


def _incident_json(incident: Incident, ctx: ReportContext) -> dict[str, Any]:
    return {
        "id": incident.id, "severity": incident.severity, "status": incident.status,
        "title": incident.title, "summary": public_summary(incident, ctx),
        "opened_at": round(incident.opened_at, 3),
        "resolved_at": None if incident.resolved_at is None else round(incident.resolved_at, 3),
        "opened": fmt_time(incident.opened_at, ctx),
        "resolved": None if incident.resolved_at is None else fmt_time(incident.resolved_at, ctx),
        "hosts": list(incident.hosts),
        "vms": [{"vm": v.vm, "downtime_s": v.downtime_s, "still_down": v.still_down,
                 "verification": v.verification} for v in incident.vms],
    }


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_STATUS_CSS = """
.banner { border-radius: 8px; padding: 14px 18px; margin: 10px 0 18px; color: #fff; }
.banner h2 { border: 0; margin: 0 0 2px; padding: 0; font-size: 1.3em; }
.banner p { margin: 0; }
.banner.disruption { background: #b42318; } .banner.degraded { background: #b54708; }
.banner.warning { background: #8a6d00; } .banner.operational { background: #067647; }
.state { font-weight: 600; }
.state.online { color: #067647; } .state.fenced, .state.suspect { color: #b42318; }
.state.ineligible, .state.degraded, .state.jeopardy, .state.waiting_for_quorum { color: #b54708; }
article { border: 1px solid #d5dbe1; border-radius: 6px; padding: 10px 14px; margin: 0 0 12px; }
article h3 { margin: 0 0 4px; font-size: 1.02em; }
article .when { color: #5c6670; font-size: 0.9em; margin: 0 0 6px; }
@media print { .banner { color: #000; border: 2px solid #000; background: none !important; } }
"""


def write_status_page(out_dir: Path, *, cluster: str, hosts_state: Mapping[str, str],
                      incidents: Sequence[Incident], now: float, simulated: bool = False
                      ) -> list[Path]:
    """Write ``index.html`` and ``status.json`` into `out_dir` (created if its parent exists;
    each file replaced whole, see :mod:`ringfence.paths`); returns both paths.
    :class:`ringfence.errors.ConfigError` names a directory or file that can not be written.

    `hosts_state` maps each host to a state name (:data:`HOST_WORDS` keys); `now` is the
    moment the page describes (simulated seconds or a wall-clock timestamp)."""
    ctx = ReportContext(cluster=cluster, simulated=simulated)
    state = overall_state(incidents, hosts_state)
    open_ = sorted((i for i in incidents if i.open), key=lambda i: (-i.opened_at, i.id))
    history = sorted((i for i in incidents if not i.open), key=lambda i: (-i.opened_at, i.id))
    document = {
        "cluster": cluster,
        "generated_at": round(now, 3),
        "generated": fmt_time(now, ctx),
        "overall": {"state": state, "title": _OVERALL[state][0], "text": _OVERALL[state][1]},
        "hosts": [{"name": name, "state": hosts_state[name],
                   "text": HOST_WORDS.get(hosts_state[name], hosts_state[name])}
                  for name in sorted(hosts_state)],
        "open_incidents": [_incident_json(i, ctx) for i in open_],
        "history": [_incident_json(i, ctx) for i in history],
    }
    from ringfence.paths import output_dir, write_file

    output_dir(out_dir)
    json_path = write_file(out_dir / "status.json",
                           json.dumps(document, indent=2, ensure_ascii=False) + "\n")

    title, text = _OVERALL[state]
    body = [f"<h1>{_e(cluster)} status</h1>",
            f'<div class="meta"><span><b>As of:</b> {_e(fmt_time(now, ctx))}</span></div>',
            f'<div class="banner {state}"><h2>{_e(title)}</h2><p>{_e(text)}</p></div>',
            "<h2>Hosts</h2><table><thead><tr><th>host</th><th>state</th></tr></thead><tbody>"]
    for name in sorted(hosts_state):
        key = hosts_state[name]
        body.append(f'<tr><td>{_e(name)}</td><td><span class="state {_e(key)}">'
                    f"{_e(HOST_WORDS.get(key, key))}</span></td></tr>")
    body.append("</tbody></table><h2>Open incidents</h2>")
    if not open_:
        body.append("<p>None.</p>")
    for incident in open_:
        body.append(_article(incident, ctx))
    body.append("<h2>History</h2>")
    if not history:
        body.append("<p>No past incident.</p>")
    for incident in history:
        body.append(_article(incident, ctx))
    body.append('<footer>Generated by ringfence from the cluster journal. '
                'Machine-readable: <a href="status.json">status.json</a>.</footer>')
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{_e(cluster)} status: {_e(title)}</title>"
            f"<style>{CSS}{_STATUS_CSS}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")
    html_path = write_file(out_dir / "index.html", page)
    return [html_path, json_path]


def _article(incident: Incident, ctx: ReportContext) -> str:
    return (f'<article id="{_e(incident.id)}"><h3><span class="badge {incident.severity}">'
            f"{_e(incident.severity)}</span> {_e(incident.id)}: {_e(incident.title)}</h3>"
            f'<p class="when">{_e(_status_words(incident, ctx))}</p>'
            f"<p>{_e(public_summary(incident, ctx))}</p></article>")
