"""The inline SVG chart of a report: one lane per host (ok, trouble, down) and per VM (where it
ran), with fault and recovery markers. No JavaScript, no outside resources.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from ringfence.journal.incidents import (
    FAILURE_KINDS,
    WARNING_KINDS,
    Incident,
)
from ringfence.journal.report_blocks import (
    ReportContext,
    _e,
)

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


