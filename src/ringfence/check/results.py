"""What a check returns: :class:`CheckReport`, its :class:`Finding` objects and the
:class:`FailureResult` of every single failure (with its :class:`LostHost` and
:class:`UnplacedVM` entries); and ``_Findings``, the list the rules add findings to.

All are frozen dataclasses; nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
FailureKind = Literal["host", "network", "witness", "store_member"]


@dataclass(frozen=True)
class Finding:
    """One thing the check found. ``failure`` names the single failure it is about
    (``"host hv1"``), or is None for the starting state and static checks."""

    severity: Severity
    kind: str
    failure: str | None
    text: str


@dataclass(frozen=True)
class LostHost:
    """A host that can not run VMs after a failure, and why."""

    host: str
    why: str


@dataclass(frozen=True)
class UnplacedVM:
    """A VM that has no place to run, and what was missing (from the placement)."""

    vm: str
    reason: str


@dataclass(frozen=True)
class FailureResult:
    """What one single failure does to the cluster."""

    failure: str
    kind: FailureKind
    target: str
    lost_hosts: tuple[LostHost, ...]
    survivors: tuple[str, ...]
    moved: tuple[tuple[str, str], ...]
    """(VM, new host) for every VM of a lost host that finds a place."""
    vms_without_place: tuple[UnplacedVM, ...]
    groups_broken: tuple[str, ...]
    groups_down: tuple[str, ...]
    """Groups (anti-affinity, or named like a monitoring group) whose members all ran on lost
    hosts: all of them are down at once until restarted."""
    quorum: bool

    @property
    def lost_host_names(self) -> tuple[str, ...]:
        return tuple(lost.host for lost in self.lost_hosts)


@dataclass(frozen=True)
class CheckReport:
    """The result of :func:`analyse`."""

    cluster: str
    hosts: int
    witnesses: int
    networks: int
    vms: int
    store_members: tuple[str, ...]
    placement: tuple[tuple[str, str | None], ...]
    """Starting placement: (VM, host), None for a VM that fits nowhere, sorted by VM."""
    failures: tuple[FailureResult, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def infos(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "info")

    @property
    def ok(self) -> bool:
        """No error: no single failure leaves a VM without a place or breaks a group."""
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, severity: Severity, kind: str, failure: str | None, text: str) -> None:
        self.items.append(Finding(severity, kind, failure, text))
