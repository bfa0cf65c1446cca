"""Durations and sizes as people write them in cluster and scenario files.

Durations: ``200ms``, ``6s``, ``1.5s``, ``2m``, ``1h``, compounds such as ``1m30s``, or a plain
number of seconds. Sizes: ``4KiB``, ``512MiB``, ``64GiB``, ``1TiB`` (binary suffixes only, so that
``GB`` never silently means 10^9 where 2^30 was meant), or a plain number of bytes.

Errors: :func:`parse_duration` and :func:`parse_size` raise :class:`ValueError` whose message says
what was given and what is expected; pydantic turns it into a validation error when the parsers are
used through :data:`Duration` and :data:`Size`, and the config loader turns that into a
:class:`ringfence.errors.ConfigError` naming the file, line and field.

Bounds: no duration is longer than :data:`MAX_DURATION` (a year) and no size larger than
:data:`MAX_SIZE` (1 EiB), whatever the field; each field narrows that with
:func:`duration_range`, :func:`size_range` or :func:`number_range` (see docs/limits.md), whose
messages say the allowed range in the field's own units.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from ringfence.errors import describe_value as _describe

__all__ = [
    "MAX_DURATION",
    "MAX_SIZE",
    "Duration",
    "Size",
    "duration_range",
    "format_duration",
    "format_size",
    "number_range",
    "parse_duration",
    "parse_size",
    "size_range",
]

MAX_DURATION = 365 * 86400.0
"""No duration in any file is longer than a year (larger values are typing mistakes)."""

MAX_SIZE = 1 << 60
"""No size in any file is larger than 1 EiB."""

_DURATION_EXPECTED = "a duration such as 200ms, 6s, 2m or 1h"
_SIZE_EXPECTED = "a size such as 4KiB, 512MiB, 64GiB or 1TiB, or a whole number of bytes"

_DURATION_UNITS: dict[str, Decimal] = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h)")
_DURATION_FULL = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h)\s*)+")
_PLAIN_NUMBER = re.compile(rf"\+?{_NUMBER}")

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "pib": 1 << 50,
}
_SIZE_RE = re.compile(rf"({_NUMBER})\s*([A-Za-z]*)")
_DECIMAL_SIZE_UNITS = {"k", "kb", "m", "mb", "g", "gb", "t", "tb", "p", "pb"}


def parse_duration(value: str | int | float) -> float:
    """Return the duration *value* in seconds.

    Accepts ``ms``, ``s``, ``m`` and ``h`` suffixes (also combined, as in ``1m30s``) and plain
    numbers, which mean seconds. Raises :class:`ValueError` for negative, non-finite or
    unparsable values and for anything that is not a string or a number.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected {_DURATION_EXPECTED}, got {_describe(value)}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected {_DURATION_EXPECTED}, got {value!r}")
        if value < 0:
            raise ValueError(
                f"a duration cannot be negative (got {value!r}); expected {_DURATION_EXPECTED}"
            )
        return _capped_duration(float(value), value)
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(
            f"a duration cannot be negative (got {value!r}); expected {_DURATION_EXPECTED}"
        )
    try:
        if _PLAIN_NUMBER.fullmatch(text):
            return _capped_duration(float(Decimal(text.lstrip("+"))), value)
        if _DURATION_FULL.fullmatch(text):
            total = sum(
                (
                    Decimal(number) * _DURATION_UNITS[unit]
                    for number, unit in _DURATION_PART.findall(text)
                ),
                Decimal(0),
            )
            return _capped_duration(float(total), value)
    except InvalidOperation:
        pass
    if re.fullmatch(rf"{_NUMBER}\s*(?:us|µs|ns|d|w|y)", text):
        raise ValueError(
            f"{value!r}: unit not accepted; durations use ms, s, m or h (as in 200ms, 6s, 2m, 1h)"
        )
    raise ValueError(f"expected {_DURATION_EXPECTED}, got {value!r}")


def _capped_duration(seconds: float, given: object) -> float:
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(
            f"{given!r} is longer than any duration ringfence accepts (a year, 8760h)"
        )
    return seconds


def parse_size(value: str | int) -> int:
    """Return the size *value* in bytes.

    Accepts ``B``, ``KiB``, ``MiB``, ``GiB``, ``TiB`` and ``PiB`` suffixes (case-insensitive) and
    plain whole numbers of bytes. Raises :class:`ValueError` for decimal suffixes such as ``GB``,
    negative or fractional byte counts, and anything else.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected {_SIZE_EXPECTED}, got {_describe(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative (got {value}); expected {_SIZE_EXPECTED}")
        return _capped_size(value, value)
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"a size cannot be negative (got {value!r}); expected {_SIZE_EXPECTED}")
    match = _SIZE_RE.fullmatch(text.lstrip("+"))
    if match is None:
        raise ValueError(f"expected {_SIZE_EXPECTED}, got {value!r}")
    number, unit = match.group(1), match.group(2).lower()
    if unit in _DECIMAL_SIZE_UNITS:
        binary = (unit[0].upper() + "iB") if unit[0] != "b" else "B"
        raise ValueError(
            f"{value!r}: decimal or ambiguous unit {match.group(2)!r} is not "
            f"accepted; write {number}{binary} (binary units: KiB, MiB, GiB, TiB)"
        )
    multiplier = _SIZE_UNITS.get(unit or "b")
    if multiplier is None:
        raise ValueError(f"expected {_SIZE_EXPECTED}, got {value!r}")
    total = Decimal(number) * multiplier
    if total > MAX_SIZE:
        return _capped_size(MAX_SIZE + 1, value)
    if total != total.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes; expected {_SIZE_EXPECTED}")
    return int(total)


def _capped_size(size: int, given: object) -> int:
    if size > MAX_SIZE:
        raise ValueError(f"{given!r} is larger than any size ringfence accepts (1 EiB)")
    return size


def _plain(number: Decimal) -> str:
    """Render *number* without exponent and without trailing zeros."""
    text = format(number.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_duration(seconds: float) -> str:
    """Render *seconds* in the shortest form that :func:`parse_duration` reads back exactly.

    Below one second: milliseconds (``0.2`` -> ``"200ms"``). Whole hours and whole minutes use
    ``h`` and ``m`` (``3600`` -> ``"1h"``, ``120`` -> ``"2m"``); everything else uses seconds
    (``6`` -> ``"6s"``, ``90`` -> ``"90s"``, ``1.25`` -> ``"1.25s"``). Raises :class:`ValueError`
    for negative or non-finite input.
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    exact = Decimal(repr(float(seconds)))
    if exact == 0:
        return "0s"
    if exact < 1:
        return f"{_plain(exact * 1000)}ms"
    if exact % 3600 == 0:
        return f"{_plain(exact / 3600)}h"
    if exact % 60 == 0:
        return f"{_plain(exact / 60)}m"
    return f"{_plain(exact)}s"


def format_size(size: int) -> str:
    """Render *size* bytes with the largest binary unit that divides it (``1 << 30`` -> ``1GiB``).

    Raises :class:`ValueError` for negative sizes.
    """
    if size < 0:
        raise ValueError(f"cannot format {size!r} as a size")
    if size == 0:
        return "0B"
    for unit, multiplier in (
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ):
        if size % multiplier == 0:
            return f"{size // multiplier}{unit}"
    return f"{size}B"


def duration_range(low: float, high: float, *, above: bool = False) -> AfterValidator:
    """A check for a :data:`Duration` field: from *low* (excluded when *above*) to *high*.

    Use as ``Annotated[Duration, duration_range(0.01, 10)]``."""
    shown = f"longer than {format_duration(low)}" if above else f"at least {format_duration(low)}"

    def check(seconds: float) -> float:
        if (seconds <= low if above else seconds < low) or seconds > high:
            raise ValueError(
                f"expected a duration {shown} and at most {format_duration(high)}, "
                f"got {format_duration(seconds)}"
            )
        return seconds

    return AfterValidator(check)


def size_range(low: int, high: int) -> AfterValidator:
    """A check for a :data:`Size` field: from *low* to *high* bytes."""

    def check(size: int) -> int:
        if not low <= size <= high:
            raise ValueError(
                f"expected a size from {format_size(low)} to {format_size(high)}, "
                f"got {format_size(size)}"
            )
        return size

    return AfterValidator(check)


def _num(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()
                                  and abs(value) < 1e18):
        return str(int(value))
    return f"{value:g}"


def number_range(low: float, high: float, what: str = "a whole number") -> AfterValidator:
    """A check for a number field (an ``int`` or a ``float``): from *low* to *high*."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"expected {what} from {_num(low)} to {_num(high)}, got {_num(value)}")
        return value

    return AfterValidator(check)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A duration in seconds; accepts everything :func:`parse_duration` accepts."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""A size in bytes; accepts everything :func:`parse_size` accepts."""
