"""A report rendered as Markdown and as one self-contained HTML page (inline CSS with print
rules, the inline SVG chart, no JavaScript), and the index of several incidents; writing the
files of a run's reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ringfence.journal.incidents import (
    Incident,
)
from ringfence.journal.report_blocks import (
    Block,
    Bullets,
    Para,
    ReportContext,
    Table,
    _e,
    fmt_duration,
    fmt_time,
)
from ringfence.journal.report_sections import report_sections
from ringfence.journal.root_cause import participants
from ringfence.journal.timeline_svg import timeline_svg


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
              ("Hosts taking part", ", ".join(participants(incident)) or "—"),
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


