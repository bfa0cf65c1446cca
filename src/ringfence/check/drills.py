"""Findings about fence drills (``ringfence fence test HOST``): a fence agent that was never
tried is the classic surprise of an incident (a wrong BMC address, an expired password, a
management network that does not route from the other hosts), so `check` reminds of every host
whose fencing was never drilled, whose last drill failed or is old, or was ``status`` only.

The records are the ones ``ringfence fence test`` writes into a state directory
(``DIR/fence-drills/HOST.json``, :mod:`ringfence.fence.drill`), read by the caller and passed in
as :class:`DrillRecords` with the time to judge their age against, so that the analysis stays a
pure function of its inputs. Hosts without a fence agent (the watchdog path: a design finding of
their own) and hosts with the simulator's ``power`` controller (nothing real to drill) are not
reported. Findings are about the single failure ``host HOST``: that is when its fencing is
needed.

Nothing here raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ringfence.check.results import _Findings
from ringfence.config import ClusterConfig
from ringfence.fence.drill import DRILLS_DIR, DrillRecord

__all__ = ["DRILL_MAX_AGE_DAYS", "DrillRecords"]

DRILL_MAX_AGE_DAYS = 90
"""A drill older than this is reported: BMC passwords rotate, firmware updates reset network
settings, management switches are re-cabled; a quarterly drill catches them."""


@dataclass(frozen=True)
class DrillRecords:
    """The drill records of one state directory, as :func:`ringfence.fence.drill.last_drills`
    read them; ``records`` is None when the directory does not exist (nothing can be said
    about drills, only that they were not looked at)."""

    state_dir: str
    records: Mapping[str, DrillRecord] | None
    now: float


def _drill_findings(config: ClusterConfig, drills: DrillRecords | None,
                    out: _Findings) -> None:
    if drills is None:
        return
    hosts = sorted(h.name for h in config.hosts
                   if h.name in config.fencing and config.fencing[h.name].agent != "power")
    if not hosts:
        return
    where = f"{drills.state_dir}/{DRILLS_DIR}"
    if drills.records is None:
        out.add("info", "fence_drill", None,
                f"fence drills not checked: no state directory {drills.state_dir} on this "
                "machine; run `ringfence check` with --state-dir DIR on the host where "
                "`ringfence fence test HOST` recorded its drills")
        return
    for host in hosts:
        agent = config.fencing[host].agent
        record = drills.records.get(host)
        command = f"`ringfence fence test {host}`"
        if record is None:
            out.add("warning", "fence_drill", f"host {host}",
                    f"fencing was never drilled: no record of {command} in {where}; run it "
                    f"from another host to prove that {agent} reaches {host}'s power control "
                    f"with working credentials (and, with {host} drained, "
                    f"`ringfence fence test {host} --off` for a real off and on)")
            continue
        days = max(0.0, drills.now - record.at) / 86400.0
        if not record.ok:
            out.add("warning", "fence_drill", f"host {host}",
                    f"fencing failed its last drill ({_ago(days)}): {agent} did not complete "
                    f"every step; an incident on {host} would wait for the watchdog path or "
                    f"stop; fix the agent's parameters and run {command} again (its output "
                    "names the failed step)")
        elif days > DRILL_MAX_AGE_DAYS:
            out.add("warning", "fence_drill", f"host {host}",
                    f"fencing was last drilled long ago: {_ago(days)} (more than "
                    f"{DRILL_MAX_AGE_DAYS} days); passwords, firmware and management networks "
                    f"change; run {command} again")
        elif not record.off:
            out.add("info", "fence_drill", f"host {host}",
                    f"fencing drilled {_ago(days)} with `status` only: the BMC answers; a real "
                    f"off and on (`ringfence fence test {host} --off`, with {host} drained) "
                    "also proves that it powers the host off and back on")


def _ago(days: float) -> str:
    if days < 1.0:
        return "today"
    whole = int(days)
    return f"{whole} day{'s' if whole != 1 else ''} ago"
