"""The words of every event, rendered from its fields (`core.events.Fact`).

Text is for people: journal lines, reports, the scenario JSON's `text`. Nothing parses it; a
kind without a renderer here gets a plain rendering of its fields, so a new kind is never
silent. Renderers never raise on missing fields (an old or partial line still reads).
"""

from __future__ import annotations

from collections.abc import Callable

from ringfence.core.events import Fact

__all__ = ["render"]


def _s(value: object, default: str = "?") -> str:
    return default if value is None or value == "" else str(value)


def _list(values: tuple[str, ...], default: str = "-") -> str:
    return ", ".join(values) if values else default


def _secs(value: float | None, fmt: str = ".1f") -> str:
    return "?" if value is None else f"{value:{fmt}}s"


def _plural(count: int | None, word: str) -> str:
    n = count or 0
    return f"{n} {word}{'' if n == 1 else 's'}"


def _with(f: Fact, text: str) -> str:
    """Append the operator and request of an audited action."""
    if f.operator:
        text += f" (by {f.operator}" + (f", request {f.request})" if f.request else ")")
    return text


def _heartbeat_lost(f: Fact) -> str:
    return (f"{_s(f.by)} hears nothing from {_s(f.host)} on {_list(f.links)} for "
            f"{_secs(f.duration, 'g')}")


def _self_fence(f: Fact) -> str:
    if f.cause == "lease_gone":
        why = "the store no longer holds this host's lease"
    else:
        why = f"store unreachable, lease last renewed {_secs(f.duration)} ago"
        if f.reason:
            why += f", and {f.reason}"
    return f"{why}; stopping {_plural(f.count, 'VM')}"


def _vm_stopped(f: Fact) -> str:
    why = {
        "lease_moved": "its lease is no longer held here",
        "operator": f"stopped by {_s(f.operator, 'an operator')}",
        "self_fence": "destroyed by self-fence",
        "fenced": f"destroyed: {_s(f.host)} has fenced itself",
        "shutdown": f"clean {_s(f.reason, 'shutdown')} of {_s(f.host)}",
    }.get(f.cause or "", _s(f.reason, "stopped"))
    if f.cause in ("self_fence", "fenced"):
        return f"{_s(f.vm)} {why}"
    text = f"{_s(f.vm)} stopped on {_s(f.host)}: {why}"
    if f.request:
        text += f" (request {f.request})"
    return text


def _vm_released(f: Fact) -> str:
    if f.cause == "handed_back":
        return f"{_s(f.vm)} handed back by {_s(f.host)}: {_s(f.reason)}"
    if f.cause == "holder_fenced":
        return f"{_s(f.host)} is {_s(f.reason, 'fenced')}: {_s(f.target)} may start {_s(f.vm)}"
    target = f.target or "the leader"
    return f"{_s(f.vm)} is stopped on {_s(f.host)}: {target} may start it"


def _vm_recovered(f: Fact) -> str:
    if f.cause == "host_lost":
        why = f"{_s(f.source)} is {_s(f.reason, 'gone')}"
    elif f.cause == "handed_back":
        why = f"{_s(f.source)} handed it back ({_s(f.reason, 'no reason')})"
    else:
        why = _s(f.reason, "it was waiting for a place")
    return _with(f, f"{_s(f.vm)}: {why}; restarting on {_s(f.target)}")


def _vm_migrating(f: Fact) -> str:
    return _with(f, f"{_s(f.vm)} moves from {_s(f.source)} to {_s(f.target)} by live "
                    f"migration: {_s(f.reason, f.cause or 'planned')}")


def _vm_migrate_failed(f: Fact) -> str:
    if f.cause == "aborted":
        return f"the migration of {_s(f.vm)} is aborted: {_s(f.reason)}"
    if f.cause == "target_fenced":
        return (f"the live migration of {_s(f.vm)} from {_s(f.source)} to {_s(f.target)} is "
                f"destroyed by {_s(f.target)}'s self-fence; {_s(f.vm)} stays on "
                f"{_s(f.source)}")
    return (f"{_s(f.vm)} could not move to {_s(f.target)}: {_s(f.detail)}; it keeps running on "
            f"{_s(f.source)}")


def _force_start(f: Fact) -> str:
    op = _s(f.operator, "an operator")
    if f.cause == "requested":
        return (f"{op} forces {_s(f.vm)} onto {_s(f.host)} (with quorum: the leader moves its "
                f"lease under the usual rules)")
    if f.cause == "without_quorum":
        return (f"{op} forced {_s(f.vm)} on {_s(f.host)} without quorum (confirmed down: "
                f"{_list(f.peers)})")
    if f.cause == "claimed":
        return (f"{op}'s forced start of {_s(f.vm)} on {_s(f.host)} is now its lease "
                f"(token {_s(f.token)})")
    text = f"{op} forced {_s(f.vm)} onto {_s(f.host)} (was on {_s(f.source, 'no host')})"
    if f.peer:
        text += f"; {f.peer} stops it first"
    return text + (f" (request {f.request})" if f.request else "")


def _link(f: Fact) -> str:
    nic = f"{_s(f.nic)} ({_s(f.network)})"
    if f.kind == "link_up":
        return f"{_s(f.host)}: {nic} has carrier again"
    if f.cause == "none_at_start":
        return f"{_s(f.host)}: {nic} has no carrier"
    return f"{_s(f.host)}: {nic} lost carrier"


def _health(f: Fact) -> str:
    return f"{_s(f.host)}: " + ("; ".join(f.reasons) or "every check passes")


def _host_shutdown(f: Fact) -> str:
    if f.cause == "drain":
        return (f"{_s(f.host)} drains its VMs by live migration before it "
                f"{'reboots' if f.reason == 'reboot' else 'shuts down'} (shutdown policy: "
                f"migrate)")
    text = f"clean {_s(f.reason, 'shutdown')} of {_s(f.host)}, {_plural(f.count, 'VM')} stopped"
    return text + ("" if f.detail is None else f"; {f.detail}")


def _waiting(f: Fact) -> str:
    if f.reason:
        return f"{_s(f.host)}: {f.reason}"
    return f"{_s(f.host)} can not reach a store quorum; starting nothing"


def _alert(f: Fact) -> str:
    return f"[{_s(f.severity, 'warning')}] {_s(f.detail, '')}"


def _alert_delivered(f: Fact) -> str:
    if f.method == "deadman":
        return f"dead-man ping to {_s(f.target)} answered: {_s(f.reason, '')}"
    attempts = f" after {_plural(f.count, 'attempt')}" if f.count and f.count > 1 else ""
    return (f"[{_s(f.severity, 'warning')}] alert delivered by {_s(f.target)}{attempts} "
            f"({_secs(f.duration)} after it was raised; {_s(f.reason, 'acknowledged')}): "
            f"{_s(f.detail, '')}")


def _alert_failed(f: Fact) -> str:
    if f.method == "deadman":
        return f"dead-man ping to {_s(f.target)} failed: {_s(f.reason)}"
    if f.method == "worker":
        return f"alert worker error: {_s(f.reason)}"
    return (f"[{_s(f.severity, 'warning')}] alert not delivered by {_s(f.target)} "
            f"({_plural(f.count, 'attempt')}): {_s(f.reason)}; alert: {_s(f.detail, '')}")


def _test(f: Fact) -> str:
    return f"{_s(f.method)} route {_s(f.target)}"


_RENDER: dict[str, Callable[[Fact], str]] = {
    "heartbeat_lost": _heartbeat_lost,
    "jeopardy": lambda f: (f"{_s(f.by)} hears {_s(f.peer)} only on {_list(f.links)} (lost: "
                           f"{_list(f.lost_links)})"),
    "heartbeat_restored": lambda f: f"{_s(f.by)} hears {_s(f.host)} on every link again",
    "link_down": _link,
    "link_up": _link,
    "link_flapping": lambda f: (f"{_s(f.host)}: {_s(f.nic)} ({_s(f.network)}) carrier changed "
                                f"{_s(f.count)} times within {_secs(f.duration, 'g')}"),
    "nic_renamed": lambda f: (f"{_s(f.host)}: {_s(f.network)} interface (MAC {_s(f.mac)}) is "
                              f"now {_s(f.nic)}, was {_s(f.old_nic)}; found by its MAC, nothing "
                              f"to reconfigure"),
    "storage_unwritable": lambda f: (f"{_s(f.host)}: datastore {_s(f.datastore)} fails its "
                                     f"write probe: {_s(f.detail)}"),
    "storage_writable": lambda f: f"{_s(f.host)}: datastore {_s(f.datastore)} is writable again",
    "memory_errors": lambda f: (f"{_s(f.host)}: {_s(f.count)} new corrected memory errors "
                                f"({_s(f.total)} since boot)"),
    "host_healthy": _health,
    "host_degraded": _health,
    "host_ineligible": _health,
    "host_suspect": lambda f: (f"no heartbeat from {_s(f.host)} on any link; its lease has "
                               f"{_secs(f.duration)} left"),
    "host_alive": lambda f: f"{_s(f.host)} is heard again",
    "host_fenced": lambda f: f"{_s(f.host)} fenced by {_s(f.method)}: {_s(f.detail)}",
    "fence_started": lambda f: (f"{_s(f.by)} fences {_s(f.host)} ({_s(f.reason)}): power "
                                f"{_s(f.action)}"),
    "fence_agent_ok": lambda f: _s(f.detail, f"{_s(f.host)} is off"),
    "fence_agent_failed": lambda f: _s(f.detail, f"fencing {_s(f.host)} failed"),
    "self_fence": _self_fence,
    "lease_expired": lambda f: (f"the store no longer holds {_s(f.host)}'s lease (incarnation "
                                f"{_s(f.incarnation)})"),
    "lease_lost": lambda f: f"{_s(f.host)}'s own lease is gone from the store",
    "watchdog_reset": lambda f: (f"{_s(f.host)}'s watchdog expired ({_secs(f.limit, 'g')} "
                                 f"without a pet): hardware reset"),
    "execution_gap": lambda f: (f"{_s(f.host)}'s agent did not run for {_secs(f.duration)} "
                                f"(the host hung, or the agent was stopped)"),
    "cycle_overrun": lambda f: (f"{_s(f.host)}'s decision cycle took {_secs(f.duration, '.2f')} "
                                f"(budget {_secs(f.limit, 'g')}): "
                                f"{_s(f.detail, 'no single part')}"),
    "failsafe_entered": lambda f: (
        f"{_s(f.host)}: the store is lost for every host and every host hears every other; "
        f"keeping {_s(f.count, '0')} VM(s), starting nothing" if f.peer is None else
        f"{_s(f.host)}: the store is lost for it, and {f.peer}, which reaches it again, vouches "
        f"for its lease there; keeping {_s(f.count, '0')} VM(s), starting nothing"),
    "failsafe_left": lambda f: (f"{_s(f.host)} reaches the store again" if f.cause == "store_back"
                                else f"{_s(f.host)}: failsafe broken: {_s(f.reason)}"),
    "failsafe_vouched": lambda f: (f"{_s(f.host)}: {_s(f.peer)} reaches the store and reads "
                                   f"{_s(f.host)}'s lease alive there; keeping its VMs for "
                                   f"{_secs(f.duration)} more unless it reaches the store "
                                   f"itself"),
    "rejoin_allowed": lambda f: f"{_s(f.host)} hears the hosts it left in failsafe",
    "rejoin_blocked": lambda f: (f"{_s(f.host)} left a failsafe cluster and waits to hear "
                                 f"{_list(f.peers)} before it joins (they may run VMs without "
                                 f"the store)"),
    "waiting_for_quorum": _waiting,
    "host_joined": lambda f: f"{_s(f.host)} joined with incarnation {_s(f.incarnation)}",
    "quorum_gained": lambda f: (f"{_s(f.host)} reaches the store again after "
                                f"{_secs(f.duration)}"),
    "quorum_lost": lambda f: f"{_s(f.host)} can not renew its lease: store unreachable",
    "store_bootstrapped": lambda f: (f"{_s(f.host)} bootstrapped the store of cluster "
                                     f"{_s(f.reason)}: identity {_s(f.detail)}"),
    "store_foreign": lambda f: f"{_s(f.host)} refuses the store: {_s(f.reason)}",
    "store_conflict": lambda f: (f"{_s(f.host)} hears {_list(f.peers)} using another store than "
                                 f"its own ({_s(f.detail, '-')}): two stores are live at once; "
                                 f"starting and moving nothing until it ends"),
    "store_forgotten": lambda f: (f"{_s(f.host)} forgot the store it remembered"
                                  + (f" ({f.detail})" if f.detail else "")
                                  + " (--forget-store): it joins the store it finds"),
    "watchdog_missing": lambda f: _s(f.reason, f"{_s(f.host)} runs without a watchdog"),
    "heartbeat_unbound": lambda f: (f"{_s(f.reason)}: that heartbeat link stays down (retried "
                                    f"at every heartbeat) until the address is on this host"),
    "host_shutdown": _host_shutdown,
    "manager_elected": lambda f: (f"{_s(f.host)} now leads the cluster" if f.peer is None
                                  else f"{_s(f.host)} takes the leadership over from "
                                       f"{_s(f.peer)}: {_s(f.reason)}"),
    "reboot_overdue": lambda f: (f"{_s(f.host)} rebooted cleanly {_secs(f.duration, 'g')} ago "
                                 f"and is not back: restarting its VMs elsewhere"),
    "vm_started": lambda f: f"{_s(f.vm)} started on {_s(f.host)} (token {_s(f.token)})",
    "vm_restarted": lambda f: f"{_s(f.vm)} restarted on {_s(f.host)} (token {_s(f.token)})",
    "vm_stopped": _vm_stopped,
    "vm_crashed": lambda f: f"{_s(f.vm)} died on {_s(f.host)}" + (f": {f.reason}"
                                                                   if f.reason else ""),
    "vm_verified": lambda f: (f"{_s(f.vm)} answers on {_s(f.host)}, {_secs(f.duration)} after "
                              f"its start"),
    "vm_verify_failed": lambda f: (f"{_s(f.vm)} started on {_s(f.host)} but does not answer "
                                   f"after {_secs(f.limit, 'g')}"),
    "vm_start_failed": lambda f: _s(f.detail, f"{_s(f.vm)} could not start on {_s(f.host)}"),
    "vm_stop_failed": lambda f: (f"{_s(f.vm)}: {_s(f.detail)}"
                                 + (f"; the watchdog will reset {f.host}"
                                    if f.cause == "self_fence" else "")),
    "hypervisor_error": lambda f: _s(f.detail, "the hypervisor could not be asked"),
    "vm_released": _vm_released,
    "vm_recovered": _vm_recovered,
    "vm_pending": lambda f: f"{_s(f.vm)} has no place to run: {_s(f.reason)}",
    "vm_failed": lambda f: (f"{_s(f.vm)} died on {_list(f.peers)} and was moved "
                            f"{_s(f.count, '0')} time(s): left stopped for an operator"),
    "vm_adopted": lambda f: (f"{_s(f.vm)} is new to the cluster: "
                             + (f"it starts on {f.host}" if f.host else "placement decides "
                                                                          "where")),
    "vm_migrating": _vm_migrating,
    "vm_migrated": lambda f: (f"{_s(f.vm)} live-migrated from {_s(f.source)} to "
                              f"{_s(f.target)}"
                              + ("" if f.duration is None else
                                 f" (paused {f.duration * 1000:.0f} ms)")),
    "vm_migrate_failed": _vm_migrate_failed,
    "vm_migrate_refused": lambda f: _with(f, f"migration of {_s(f.vm)} to {_s(f.target)} "
                                             f"refused: {_s(f.reason)}"),
    "vm_stranded": lambda f: (f"{_s(f.vm)} stays on {_s(f.host)}, which is ineligible "
                              f"({_s(f.reason)}): no eligible host can take it "
                              f"({_s(f.detail, 'no room')})"),
    "vm_relocating": lambda f: (f"{_s(f.vm)}: {_s(f.source)} is ineligible ({_s(f.reason)}); "
                                f"restarting on {_s(f.target)} once {_s(f.source)} has stopped "
                                f"it"),
    "vm_stop_requested": lambda f: _with(f, f"{_s(f.vm)} is to stay stopped"),
    "vm_start_requested": lambda f: _with(f, f"{_s(f.vm)} may run again"),
    "force_start": _force_start,
    "force_start_pending": lambda f: (f"{_s(f.operator, 'an operator')} forces {_s(f.vm)} onto "
                                      f"{_s(f.host)} without quorum; {_s(f.reason)}"),
    "force_start_waiting": lambda f: (f"{_s(f.operator, 'an operator')}'s forced start of "
                                      f"{_s(f.vm)} onto {_s(f.host)} waits: {_s(f.vm)} is "
                                      f"moving from {_s(f.source)} to {_s(f.target)}, and "
                                      f"{_s(f.source)} still runs it"),
    "force_start_refused": lambda f: _with(f, f"forced start of {_s(f.vm)} onto {_s(f.host)} "
                                              f"refused: {_s(f.reason)}"),
    "preexisting_split_brain": lambda f: _s(f.detail, "two histories diverged"),
    "maintenance_on": lambda f: _with(f, f"{_s(f.host)} is in maintenance: drain it"),
    "maintenance_off": lambda f: _with(f, f"{_s(f.host)} is out of maintenance"),
    "operator_refused": lambda f: _with(f, f"{_s(f.reason)}"),
    "operator_request": lambda f: _with(f, _s(f.reason, "an operator's request")),
    "alert_sent": _alert,
    "alert_delivered": _alert_delivered,
    "alert_failed": _alert_failed,
    "alert_resolved": lambda f: (f"[{_s(f.severity, 'warning')}] resolved ({_s(f.reason)}): "
                                 f"{_s(f.detail, '')}"),
    "route_test_failed": lambda f: f"{_test(f)} failed its self-test: {_s(f.reason)}",
    "route_test_passed": lambda f: (f"{_test(f)} passes its self-test again "
                                    f"({_s(f.reason, 'answered')}; after "
                                    f"{_plural(f.count, 'failed test')})"),
    "monitor_down": lambda f: (f"monitor {_s(f.target)} ({_s(f.method)}) does not answer "
                               f"({_plural(f.count, 'failed check')}): {_s(f.reason)}"),
    "monitor_up": lambda f: (f"monitor {_s(f.target)} ({_s(f.method)}) answers again "
                             f"({_s(f.reason, 'answered')})"),
}


def render(fact: Fact) -> str:
    """The text of one event."""
    renderer = _RENDER.get(fact.kind)
    if renderer is not None:
        return renderer(fact)
    from ringfence.core.events import fact_fields

    parts = ", ".join(f"{k}={v}" for k, v in sorted(fact_fields(fact).items()))
    return f"{fact.kind}: {parts}" if parts else fact.kind
