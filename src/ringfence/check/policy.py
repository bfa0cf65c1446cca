"""Findings about ``policy.host_failures_to_tolerate``: one host is checked with the
single failures, two or more by trying every combination of that many hosts (up to
``_COMBINATION_LIMIT``), and by total capacity beyond.

Nothing here raises for a validated configuration.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from ringfence.check.failures import _NO_MAJORITY, _Cluster, _Outcome, _simulate
from ringfence.check.results import _Findings
from ringfence.check.words import _names, _plural
from ringfence.units import format_size

_COMBINATION_LIMIT = 2000
"""``host_failures_to_tolerate`` >= 2 is checked exactly (every combination of that many
hosts) up to this many combinations, and by total capacity beyond."""


def _outcome_trouble(outcome: _Outcome) -> str:
    r = outcome.result
    parts: list[str] = []
    if not r.survivors:
        quorum_lost = any(lost.why == _NO_MAJORITY for lost in r.lost_hosts)
        parts.append("the store loses quorum" if quorum_lost else "no host survives")
    elif r.vms_without_place:
        parts.append(f"no place for {_names(u.vm for u in r.vms_without_place)}")
    if r.survivors and r.groups_broken:
        parts.append(f"broken groups {_names(r.groups_broken)}")
    return "; ".join(parts)


def _policy_findings(cluster: _Cluster, singles: Sequence[_Outcome], out: _Findings) -> None:
    config = cluster.config
    k = config.policy.host_failures_to_tolerate
    if k == 0:
        return
    hosts = cluster.host_names
    field = f"policy.host_failures_to_tolerate ({k})"
    if k >= len(hosts):
        out.add("warning", "policy", None,
                f"{field} can not be met: the cluster has {_plural(len(hosts), 'host')}")
        return
    if k == 1:
        failing = [o for o in singles if o.result.kind == "host" and _outcome_trouble(o)]
        if failing:
            listing = "; ".join(f"{o.result.target}: {_outcome_trouble(o)}" for o in failing)
            out.add("warning", "policy", None, f"{field} is not met: {listing}")
        return
    count = math.comb(len(hosts), k)
    if count <= _COMBINATION_LIMIT:
        failing_combos: list[str] = []
        for combo in itertools.combinations(hosts, k):
            outcome = _simulate(cluster, failure=f"hosts {', '.join(combo)}", kind="host",
                                target=", ".join(combo), down=frozenset(combo))
            trouble = _outcome_trouble(outcome)
            if trouble:
                failing_combos.append(f"{' + '.join(combo)}: {trouble}")
        if failing_combos:
            shown = "; ".join(failing_combos[:5])
            more = len(failing_combos) - 5
            out.add("warning", "policy", None,
                    f"{field} is not met for {len(failing_combos)} of {count} combinations "
                    f"of {k} failed hosts: {shown}" + (f"; and {more} more" if more > 0 else ""))
        return
    _policy_by_capacity(cluster, k, field, out)


def _policy_by_capacity(cluster: _Cluster, k: int, field: str, out: _Findings) -> None:
    """Too many combinations to try: the total room left after losing the k largest hosts
    must hold every VM (a necessary condition, checked per resource)."""
    specs = [cluster.config.host(h) for h in cluster.host_names]
    cpus_needed = sum(vm.cpus for vm in cluster.config.vms)
    memory_needed = sum(vm.memory for vm in cluster.config.vms)
    cpus_left = sum(sorted(h.cpus for h in specs)[:-k])
    memory_left = sum(sorted(h.memory for h in specs)[:-k])
    short: list[str] = []
    if cpus_left < cpus_needed:
        short.append(f"{cpus_needed} CPUs needed, {cpus_left} left")
    if memory_left < memory_needed:
        short.append(f"{format_size(memory_needed)} of memory needed, "
                     f"{format_size(memory_left)} left")
    if short:
        out.add("warning", "policy", None,
                f"{field} is not met: after losing the {k} largest hosts, {'; '.join(short)}")
    else:
        out.add("info", "policy", None,
                f"{field}: the room left after losing the {k} largest hosts holds every VM "
                f"(checked by total capacity; {math.comb(len(specs), k)} combinations are too "
                "many to place one by one)")
