"""An incident's title in words, from its hosts' events and its VMs' outages (`lost carrier on
eth0`, `rebooted cleanly; datastore rbd not writable after boot`...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ringfence.journal.events import Event
from ringfence.journal.incident_model import (
    _BOOT_KINDS,
    _FENCE_PROOF_KINDS,
    OperatorAction,
    Outage,
    VmImpact,
)
from ringfence.journal.outages import _nic


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``, ``a, b, c and 2 more``."""
    if len(items) > 4:
        return f"{', '.join(items[:3])} and {len(items) - 3} more"
    if len(items) > 1:
        return f"{', '.join(items[:-1])} and {items[-1]}"
    return items[0] if items else ""


def _predicate(host: str, own: list[Event], outages: Sequence[Outage]) -> str | None:
    """What went wrong with `host`, in a few plain words (headline style), or None."""
    about = [e for e in own if e.host == host]
    kinds = {e.kind for e in about}
    downs = [e for e in about if e.kind == "link_down"]
    lost = {"host_suspect", "host_fenced", "self_fence", "quorum_lost", "heartbeat_lost"}
    if downs and lost & kinds:
        first = downs[0].t
        nics = sorted({_nic(e) for e in downs if e.t - first <= 1.0})
        return f"lost carrier on {', '.join(nics)}"
    if downs and "host_ineligible" in kinds:
        nics = sorted({_nic(e) for e in downs})
        return f"lost carrier on {', '.join(nics)}, unfit to run VMs"
    if "memory_errors" in kinds and not lost & kinds:
        return "reported corrected memory errors"
    if "link_flapping" in kinds and not lost & kinds:
        nics = sorted({_nic(e) for e in about if e.kind == "link_flapping"})
        return f"carrier flapping on {', '.join(nics)}"
    if "host_shutdown" in kinds:
        stop = next(e for e in about if e.kind == "host_shutdown")
        return "rebooted cleanly" if stop.fact.reason == "reboot" else "shut down cleanly"
    if any(o.from_host == host and o.cause.startswith("died when")
           for o in outages):
        return "restarted without warning (a power loss or crash nobody saw)"
    if kinds & {"heartbeat_lost", "host_suspect", "lease_expired", "host_fenced"}:
        first = min(e.t for e in about if e.kind in ("heartbeat_lost", "host_suspect",
                                                      "lease_expired", "host_fenced"))
        proof = min((e.t for e in about if e.kind in _FENCE_PROOF_KINDS), default=math.inf)
        alive = any(host in e.observers and first - 1.0 <= e.t < proof
                    and e.kind not in _BOOT_KINDS and e.kind != "host_joined" for e in own)
        if not kinds & {"host_suspect", "lease_expired", "host_fenced", "self_fence"}:
            return "briefly not heard on any heartbeat link"
        return "cut off from the cluster" if alive or "quorum_lost" in kinds \
            else "stopped answering"
    if "storage_unwritable" in kinds:
        stores = sorted({e.fact.datastore or "?" for e in about
                         if e.kind == "storage_unwritable"})
        return f"datastore {', '.join(stores)} not writable"
    if "host_ineligible" in kinds:
        return "unfit to run VMs"
    if downs:
        return f"lost carrier on {', '.join(sorted({_nic(e) for e in downs}))}"
    if kinds & {"quorum_lost", "waiting_for_quorum", "failsafe_entered"}:
        return "lost the cluster store"
    if "nic_renamed" in kinds:
        return "came back with renamed interfaces"
    return None


def _grouped(hosts: Sequence[str], phrase: Callable[[str], str | None]) -> list[str]:
    """`hosts` grouped by the same phrase: ``["a and b stopped answering", ...]``."""
    groups: dict[str, list[str]] = {}
    for host in hosts:
        said = phrase(host)
        if said is not None:
            groups.setdefault(said, []).append(host)
    return [f"{_names(members)} {said}" for said, members in groups.items()]


def _fence_phrase(host: str, own: list[Event]) -> str | None:
    fenced = [e for e in own if e.kind == "host_fenced" and e.host == host]
    if fenced:
        return ("fenced by watchdog" if (fenced[0].fact.method or "").startswith("watchdog")
                else "fenced by fence agent")
    if any(e.kind == "self_fence" and e.host == host for e in own):
        return "fenced itself"
    return None


def _title(hosts: tuple[str, ...], own: list[Event], vms: tuple[VmImpact, ...],
           waiting: list[str], actions: tuple[OperatorAction, ...]) -> str:
    outages = [o for v in vms for o in v.outages]
    parts = _grouped(hosts, lambda h: _predicate(h, own, outages))
    fences = _grouped(hosts, lambda h: _fence_phrase(h, own))
    if len(hosts) == 1 and parts and fences:
        fences = [f.removeprefix(f"{hosts[0]} ") for f in fences]
    parts += [f.replace(" and ", " and ", 1).replace("fenced itself", "fenced themselves")
              if " and " in f.split(" fenced")[0] else f for f in fences]
    if any(e.kind == "storage_unwritable" for e in own) and not any(
            "not writable" in p for p in parts):
        stores = sorted({e.fact.datastore or "?" for e in own
                         if e.kind == "storage_unwritable"})
        parts.append(f"datastore {', '.join(stores)} not writable after boot")
    crashes: dict[str, int] = {}
    for e in own:
        if e.kind == "vm_crashed" and e.vm:
            crashes[e.vm] = crashes.get(e.vm, 0) + 1
    for vm, count in sorted(crashes.items()):
        parts.append(f"{vm} crashed" + (f" {count} times" if count > 1 else ""))
    forced = [a for a in actions if a.kind == "force_start" and a.operator and a.vm]
    if forced:
        first = forced[0]
        parts.append(f"{first.operator} forced {first.vm} onto {first.host}")
    refused = [a for a in actions if a.kind == "force_start_refused"]
    if refused:
        parts.append(f"{_plural(len(refused), 'conflicting forced start')} refused")
    split = [e for e in own if e.kind == "preexisting_split_brain"]
    if split:
        parts.append(f"split brain evidence for {_names(sorted({e.vm or '?' for e in split}))}")
    moved = [v for v in vms if v.moved_live]
    restarted = [v for v in vms if not v.moved_live and not v.still_down]
    elsewhere = [v for v in restarted
                 if any(o.to_host != o.from_host for o in v.outages if not o.live)]
    if moved:
        parts.append(f"{_plural(len(moved), 'VM')} moved away by live migration")
    if elsewhere:
        parts.append(f"{_plural(len(elsewhere), 'VM')} restarted elsewhere")
    if len(elsewhere) < len(restarted):
        parts.append(f"{_plural(len(restarted) - len(elsewhere), 'VM')} restarted in place")
    failed = sorted({e.vm for e in own if e.kind == "vm_failed" and e.vm in waiting})
    if failed:
        parts.append(f"{_names(failed)} left stopped for an operator")
    homeless = [vm for vm in waiting if vm not in failed]
    if homeless:
        parts.append(f"no place to run {_names(homeless)}")
    down = sorted({v.vm for v in vms if v.still_down} - set(waiting))
    if down:
        parts.append(f"{_names(down)} {'is' if len(down) == 1 else 'are'} still down")
    return "; ".join(parts) if parts else "Trouble in the cluster"


