"""Exceptions that ringfence raises for problems a user can fix.

:class:`RingfenceError` is the base of every such exception; the command line catches it, prints
``str(error)`` and exits without a traceback. :class:`ConfigError` reports what is wrong in a
cluster or scenario file: one or more :class:`Problem` s, each naming the file, the line, the field
path (``hosts[1].memory``) and what is expected there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "Problem", "RingfenceError", "describe_value", "libvirt_missing"]


class RingfenceError(Exception):
    """Base class of the errors ringfence reports to users (no traceback needed)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where it is and what is expected instead."""

    file: str | None
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
        elif self.line is not None:
            where = f"line {self.line}"
        parts = [part for part in (where, self.path) if part]
        parts.append(self.message)
        return ": ".join(parts)


class ConfigError(RingfenceError):
    """A cluster or scenario file (or its Python equivalent) is invalid.

    Either give one problem through *message*, *file*, *line* and *path*, or several through
    *problems*. The attributes ``file``, ``line``, ``path`` and ``message`` describe the first
    problem; ``str()`` renders one line per problem as ``FILE:LINE: PATH: MESSAGE``.
    """

    problems: list[Problem]

    def __init__(
        self,
        message: str = "",
        *,
        file: str | None = None,
        line: int | None = None,
        path: str = "",
        problems: Iterable[Problem] | None = None,
    ) -> None:
        collected = list(problems) if problems is not None else []
        if message or not collected:
            collected.insert(0, Problem(file=file, line=line, path=path, message=message))
        self.problems = collected
        super().__init__(str(self))

    @property
    def file(self) -> str | None:
        return self.problems[0].file

    @property
    def line(self) -> int | None:
        return self.problems[0].line

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def message(self) -> str:
        return self.problems[0].message

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def describe_value(value: object) -> str:
    """Describe a bad input for an error message: ``'abc'``, ``the number 5``, ``a list``."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"a {type(value).__name__}"


def libvirt_missing(uri: str, python: str) -> str:
    """What to do when a host's hypervisor is a libvirt URI and `import libvirt` fails."""
    return (
        f"{uri} is a libvirt URI, and libvirt-python (the Python module 'libvirt') is not "
        f"installed for {python}. Install it: `PYTHON={python} bash scripts/install-libvirt` "
        "from a ringfence checkout, or `apt-get install libvirt-dev pkg-config gcc "
        f"python3-dev && {python} -m pip install 'ringfence[libvirt]'`; or use "
        "hypervisor: process"
    )
