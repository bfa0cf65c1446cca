"""Field paths, the lines they stand on, and the problems raised at them.

A field path is a tuple (:data:`Loc`: ``("hosts", 1, "memory")``), shown to people as
``hosts[1].memory`` (:func:`format_path`). :data:`LineMap` is what the YAML reader records: the
line of every key and list item by its path. Model validators raise :class:`FieldProblems` (one
message per relative path) rather than a single string, so that the loader can point at the
exact field; :func:`unknown_name` is the one wording for a reference to something undefined.
Nothing here raises except :class:`FieldProblems` itself, which is meant to be raised.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

Loc = tuple[str | int, ...]
"""A field path as a tuple: ``("hosts", 1, "memory")``."""

LineMap = dict[Loc, int]
"""Line (1-based) of every mapping key and sequence item of a YAML document, by field path."""


class FieldProblems(ValueError):
    """Raised by model validators: one or more problems, each at a path relative to the model.

    The loader turns each into a :class:`~ringfence.errors.Problem` at the model's own path plus
    the relative one, so a cross-check can point at ``hosts[2].networks[0]`` rather than at the
    whole cluster.
    """

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems: list[tuple[Loc, str]] = list(problems)
        super().__init__(
            "; ".join(
                f"{format_path(loc)}: {message}" if loc else message
                for loc, message in self.problems
            )
        )


def format_path(loc: Iterable[str | int]) -> str:
    """Render a field path: ``("hosts", 1, "memory")`` -> ``hosts[1].memory``."""
    out = ""
    for segment in loc:
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            out += f".{segment}" if out else segment
    return out


def unknown_name(kind: str, name: str, known: Sequence[str], plural: str | None = None) -> str:
    """Message for a reference to something that does not exist, listing what does."""
    plural = plural or f"{kind}s"
    known = list(dict.fromkeys(known))
    if not known:
        return f"unknown {kind} {name!r}; the cluster defines no {plural}"
    shown = ", ".join(known[:12]) + (f", … ({len(known) - 12} more)" if len(known) > 12 else "")
    message = f"unknown {kind} {name!r}; known {plural}: {shown}"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


def _line_for(loc: Loc, lines: LineMap | None) -> int | None:
    if not lines:
        return None
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None
