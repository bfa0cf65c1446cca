"""The building blocks of a report: its context (how to show times, where the events came
from), time and duration formats, and the blocks sections are made of (paragraphs, bullets,
tables, the chart). Pure: nothing here reads an incident.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ringfence.journal.incidents import (
    Incident,
)

if TYPE_CHECKING:
    from ringfence.config import ClusterConfig


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
    customer_host_names: bool = False  # may the customer summary name internal hosts?


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


def _e(text: str) -> str:
    """HTML-escaped text (for the HTML page and the SVG chart)."""
    return html.escape(text, quote=True)
