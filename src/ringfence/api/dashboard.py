"""The dashboard at `/`: the whole page rendered on the server (readable with JavaScript off),
kept live by a small script (`static/dashboard.js`) that listens to the journal's server-sent
events and fetches the page's main part again (`/dashboard/main`) when something happened, and
every few seconds (lease ages).

It shows: the hosts (state, lease age, failsafe, the heartbeat state of every peer on every
link), the store and its members, the VMs (host, fencing token, state, where they moved from),
the open incidents with each VM's downtime and a link to the report, the recent alerts
(`alert_sent`) with their delivery by every route (delivered, failed, rate limited, owed in the
store's outbox: `api.alert_view`), a timeline of the last hour (inline SVG: one lane per host,
a mark per event, incidents as bands) and the latest journal lines.

Failure semantics: never raises for what the store or the journal holds (see `api.views`); a
store that does not answer is shown as such, with its error, at the top.
"""

from __future__ import annotations

import time
from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from ringfence.api.models import HostView, VmView
from ringfence.api.source import ClusterSource
from ringfence.api.views import Snapshot, Snapshots

__all__ = ["install_dashboard", "render_main", "render_page"]

BAD_HOST = ("suspect", "fenced", "offline", "unknown", "never")
WARN_HOST = ("maintenance", "jeopardy", "degraded", "ineligible")
FAULT_KINDS = frozenset({"heartbeat_lost", "host_suspect", "host_fenced", "self_fence",
                         "lease_expired", "fence_agent_failed", "vm_crashed", "quorum_lost",
                         "watchdog_reset", "vm_failed", "storage_unwritable", "execution_gap"})
GOOD_KINDS = frozenset({"vm_recovered", "vm_started", "vm_verified", "host_joined",
                        "heartbeat_restored", "host_alive", "quorum_gained", "vm_migrated"})
WINDOW = 3600.0


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _host_class(state: str) -> str:
    if state.startswith(BAD_HOST):
        return "bad"
    if state.startswith(WARN_HOST):
        return "warn"
    return "ok"


def _links(view: HostView) -> str:
    cells = []
    for peer, links in view.links.items():
        parts = [f'<span class="link up">{_e(n)}</span>' for n in links.alive]
        parts += [f'<span class="link down">{_e(n)} ✗</span>' for n in links.dead]
        cells.append(f'<span class="peer {_e(links.state)}">{_e(peer)}: {" ".join(parts) or "none"}'
                     f'</span>')
    return " ".join(cells) or "-"


def _hosts(snap: Snapshot, source: ClusterSource) -> str:
    rows = []
    for view in snap.hosts(source):
        flags = []
        if view.leader:
            flags.append("leader")
        if view.failsafe:
            flags.append("failsafe")
        age = f"{view.lease_age_s:.1f} s" if view.lease_age_s is not None else "-"
        rows.append(f'<tr class="{_host_class(view.state)}" data-host="{_e(view.name)}">'
                    f"<td>{_e(view.name)}</td><td>{_e(view.state)}</td><td>{age}</td>"
                    f"<td>{_e(', '.join(flags))}</td><td>{_links(view)}</td></tr>")
    return ("<section><h2>Hosts</h2><table><tr><th>host</th><th>state</th><th>lease age</th>"
            "<th></th><th>heartbeat links (per peer)</th></tr>" + "".join(rows)
            + "</table></section>")


def _store(snap: Snapshot, source: ClusterSource) -> str:
    store = snap.status["store"]
    witnesses = ", ".join(w.name for w in source.config.witnesses) or "none"
    quorum = ("quorum" if store["quorum"]
              else f'<b class="badtext">NO QUORUM</b>: {_e(store.get("error"))}')
    return (f"<p>store {_e(store['kind'])} ({_e(', '.join(store['members']))}): {quorum}; "
            f"revision {_e(store.get('revision') or '-')}; witnesses: {_e(witnesses)}</p>")


def _vm_row(view: VmView) -> str:
    moved = f"from {_e(view.moved_from)}" if view.moved_from else ""
    cls = "ok" if view.host else ("warn" if view.state.startswith("stopped") else "bad")
    return (f'<tr class="{cls}" data-vm="{_e(view.name)}"><td>{_e(view.name)}</td>'
            f"<td>{_e(view.host or '-')}</td><td>{_e(view.token or '-')}</td>"
            f"<td>{_e(view.state)}</td><td>{moved}</td></tr>")


def _vms(snap: Snapshot, source: ClusterSource) -> str:
    rows = "".join(_vm_row(v) for v in snap.vms(source))
    return ("<section><h2>VMs</h2><table><tr><th>VM</th><th>host</th><th>token</th>"
            "<th>state</th><th>moved</th></tr>" + rows + "</table></section>")


def _incidents(snap: Snapshot) -> str:
    recent = [i for i in snap.incidents if i.open or (
        i.resolved_at is not None and i.resolved_at >= snap.taken_at - WINDOW)]
    if not recent:
        return "<section><h2>Incidents</h2><p>no incident in the last hour</p></section>"
    items = []
    for incident in sorted(recent, key=lambda i: -i.opened_at):
        impacts = "".join(
            f"<li>{_e(v.vm)}: {_e(v.from_host or '?')} → {_e(v.to_host or 'still down')}, "
            f"down {v.downtime_s:.1f} s{' (live migration)' if v.moved_live else ''}</li>"
            for v in incident.vms)
        report = f"/api/v1/incidents/{_e(incident.id)}/report.html"
        items.append(
            f'<div class="incident {_e(incident.severity)}" data-incident="{_e(incident.id)}">'
            f"<h3>{_e(incident.id)} [{_e(incident.severity)}, {_e(incident.status)}] "
            f"{_e(incident.title)}</h3><p>opened {_clock(incident.opened_at)}; hosts: "
            f"{_e(', '.join(incident.hosts) or '-')} · <a href=\"{report}\">report</a> "
            f"(<a href=\"{report[:-5]}.md\">markdown</a>)</p><ul>{impacts}</ul></div>")
    return "<section><h2>Incidents</h2>" + "".join(items) + "</section>"


_DELIVERY_CLASS = {"delivered": "up", "pending": "wait", "unknown": "wait",
                   "failed": "down", "rate_limited": "down"}


def _alerts(snap: Snapshot, source: ClusterSource) -> str:
    alerts = snap.alerts(source, 10)
    if not alerts:
        return "<section><h2>Recent alerts</h2><p>none</p></section>"
    routes = bool(source.config.alerts)
    rows = []
    for alert in alerts:
        states = " ".join(
            f'<span class="link {_DELIVERY_CLASS[d.state]}" data-route="{_e(d.route)}" '
            f'title="{_e(d.detail or d.state)}">{_e(d.route)}: {_e(d.state.replace("_", " "))}'
            f"</span>" for d in alert.deliveries)
        if not states:
            states = ("no route takes this severity" if routes
                      else "journal only (no alert route configured)")
        rows.append(f'<tr class="{"bad" if alert.severity == "critical" else "warn"}">'
                    f"<td>{_clock(alert.t)}</td><td>{_e(alert.severity)}</td>"
                    f"<td>{_e(alert.text)}</td><td>{states}</td></tr>")
    return ("<section><h2>Recent alerts</h2><table><tr><th>raised</th><th>severity</th>"
            "<th>alert</th><th>delivery</th></tr>" + "".join(rows) + "</table></section>")


def timeline_svg(snap: Snapshot, source: ClusterSource, width: int = 900) -> str:
    """The last hour: one lane per host, a mark per event about it (red: a fault, green: a
    recovery, grey: the rest), incidents as shaded bands, a tick every 10 minutes."""
    end = snap.taken_at
    start = end - WINDOW
    hosts = [h.name for h in source.config.hosts]
    left, lane = 70, 22
    height = 20 + lane * len(hosts) + 20
    span = width - left - 10

    def x(t: float) -> float:
        return left + span * (max(start, min(end, t)) - start) / WINDOW

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="timeline of the last hour">']
    for incident in snap.incidents:
        stop = incident.resolved_at if incident.resolved_at is not None else end
        if stop < start:
            continue
        parts.append(f'<rect x="{x(incident.opened_at):.1f}" y="14" '
                     f'width="{max(2.0, x(stop) - x(incident.opened_at)):.1f}" '
                     f'height="{lane * len(hosts) + 4}" fill="#fbb" opacity="0.4">'
                     f"<title>{_e(incident.id)}: {_e(incident.title)}</title></rect>")
    for row, host in enumerate(hosts):
        y = 20 + row * lane
        parts.append(f'<text x="4" y="{y + 12}" font-size="12">{_e(host)}</text>'
                     f'<line x1="{left}" y1="{y + 8}" x2="{left + span}" y2="{y + 8}" '
                     f'stroke="#ddd"/>')
        for entry in snap.journal:
            t = float(entry.get("t", 0) or 0)
            if t < start or (entry.get("host") or entry.get("by")) != host:
                continue
            kind = str(entry.get("kind"))
            color = "#c00" if kind in FAULT_KINDS else "#080" if kind in GOOD_KINDS else "#999"
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y + 8}" r="3" fill="{color}">'
                         f"<title>{_clock(t)} {_e(kind)}: {_e(entry.get('text'))}</title>"
                         f"</circle>")
    base = 20 + lane * len(hosts) + 14
    for minutes in range(0, 61, 10):
        t = start + minutes * 60
        parts.append(f'<text x="{x(t) - 14:.1f}" y="{base}" font-size="10" fill="#666">'
                     f"{_clock(t)[:5]}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _journal(snap: Snapshot) -> str:
    lines = "".join(f"<li>{_clock(float(e.get('t', 0) or 0))} {_e(e.get('by'))} "
                    f"<b>{_e(e.get('kind'))}</b> {_e(e.get('text'))}</li>"
                    for e in reversed(snap.journal[-15:]))
    return f'<section><h2>Journal</h2><ul class="journal">{lines}</ul></section>'


def render_main(snap: Snapshot, source: ClusterSource) -> str:
    """The page's live part (what the script replaces)."""
    leader = snap.status.get("leader") or "none"
    return (f"<p>cluster <b>{_e(source.config.name)}</b> · leader <b>{_e(leader)}</b> · "
            f"as of {_clock(snap.taken_at)}</p>" + _store(snap, source)
            + _hosts(snap, source) + _vms(snap, source) + _incidents(snap) + _alerts(snap, source)
            + "<section><h2>Last hour</h2>" + timeline_svg(snap, source) + "</section>"
            + _journal(snap))


def render_page(snap: Snapshot, source: ClusterSource) -> str:
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>ringfence · {_e(source.config.name)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="stylesheet" href="/static/dashboard.css"></head><body>'
            f'<h1>ringfence · {_e(source.config.name)} <small id="live">static</small></h1>'
            f'<main id="main">{render_main(snap, source)}</main>'
            '<footer><a href="/api/v1/docs">API</a> · <a href="/metrics">metrics</a> · '
            '<a href="/api/v1/incidents">incidents (JSON)</a></footer>'
            '<script src="/static/dashboard.js" defer></script></body></html>')


def install_dashboard(app: FastAPI, source: ClusterSource, snapshots: Snapshots) -> None:
    @app.get("/", response_class=HTMLResponse, tags=["dashboard"])
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(snapshots.take(), source))

    @app.get("/dashboard/main", response_class=HTMLResponse, tags=["dashboard"])
    def main() -> HTMLResponse:
        return HTMLResponse(render_main(snapshots.take(), source))


