"""Wording shared by the findings and the text report: durations, name lists,
plurals. Nothing here raises.
"""

from __future__ import annotations

from collections.abc import Iterable

from ringfence.units import format_duration


def _dur(seconds: float) -> str:
    """A duration for humans, rounded to the millisecond, with a sign when negative."""
    rounded = round(abs(seconds), 3)
    text = format_duration(rounded)
    return f"-{text}" if seconds < 0 and rounded > 0 else text


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"
