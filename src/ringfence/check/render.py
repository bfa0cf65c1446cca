"""Presenting a :class:`~ringfence.check.results.CheckReport`: :func:`render_text`
(the table of single failures, the findings wrapped at 100 columns, the verdict) and
:func:`to_json` (the shape of ``ringfence check --json``).

Neither raises.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ringfence.check.results import CheckReport
from ringfence.check.words import _plural

_TEXT_WIDTH = 100


def _cell(values: Sequence[str], limit: int = 32) -> str:
    if not values:
        return "-"
    text = ", ".join(values)
    if len(text) <= limit:
        return text
    shown: list[str] = []
    for value in values:
        candidate = ", ".join([*shown, value])
        if len(candidate) + 8 > limit:
            break
        shown.append(value)
    return ", ".join(shown) + f", … (+{len(values) - len(shown)})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def render_text(report: CheckReport) -> str:
    """The report as plain text: a table of single failures, then the findings."""
    lines = [
        f"ringfence check: cluster {report.cluster}: {_plural(report.hosts, 'host')}, "
        f"{_plural(report.witnesses, 'witness', 'witnesses')}, "
        f"{_plural(report.networks, 'network')}, {_plural(report.vms, 'VM')}, "
        f"{_plural(len(report.store_members), 'store member')}",
        "",
        "Single failures:",
    ]
    rows = [
        [
            r.failure,
            _cell(r.lost_host_names),
            str(len(r.moved)),
            _cell([u.vm for u in r.vms_without_place]),
            _cell(r.groups_broken),
            "yes" if r.quorum else "LOST",
        ]
        for r in report.failures
    ]
    lines += _table(
        ["FAILURE", "LOST HOSTS", "VMS MOVED", "VMS WITHOUT A PLACE", "GROUPS BROKEN", "QUORUM"],
        rows,
    )
    lines += ["", "Findings:"]
    if not report.findings:
        lines.append("  none")
    for finding in report.findings:
        head = f"  {finding.severity.upper():<8} {finding.failure or 'cluster'}: "
        lines += textwrap.wrap(
            finding.text,
            width=_TEXT_WIDTH,
            initial_indent=head,
            subsequent_indent=" " * 11,
            break_long_words=False,
            break_on_hyphens=False,
        )
    counts = (
        f"{_plural(len(report.errors), 'error')}, {_plural(len(report.warnings), 'warning')}, "
        f"{_plural(len(report.infos), 'note')}"
    )
    verdict = "OK" if report.ok else "FAILED: a single failure leaves VMs without a place"
    if not report.ok and not any(
        f.kind in ("vm_without_place", "quorum_lost", "cluster_lost") for f in report.errors
    ):
        verdict = "FAILED: a single failure breaks an anti-affinity group"
    lines += ["", f"Result: {verdict} ({counts})"]
    return "\n".join(lines) + "\n"


def to_json(report: CheckReport) -> dict[str, Any]:
    """The report as JSON-ready data (the shape of ``ringfence check --json``)."""
    return {
        "cluster": report.cluster,
        "ok": report.ok,
        "findings": [
            {"severity": f.severity, "kind": f.kind, "failure": f.failure, "text": f.text}
            for f in report.findings
        ],
        "failures": [
            {
                "failure": r.failure,
                "kind": r.kind,
                "target": r.target,
                "lost_hosts": list(r.lost_host_names),
                "lost_why": {lost.host: lost.why for lost in r.lost_hosts},
                "moved": dict(r.moved),
                "vms_without_place": [u.vm for u in r.vms_without_place],
                "reasons": {u.vm: u.reason for u in r.vms_without_place},
                "groups_broken": list(r.groups_broken),
                "groups_down": list(r.groups_down),
                "quorum": r.quorum,
            }
            for r in report.failures
        ],
        "placement": dict(report.placement),
        "store_members": list(report.store_members),
    }
