"""The ``timing:`` section: heartbeat, lease, watchdog and fencing timers.

:class:`Timing` has safe defaults. Its ``model_validator`` checks that the timers are safe
together (the watchdog fires before the lease runs out, heartbeats notice a lost host before
its lease runs out, a renewal can fail once and be tried again before the self-fence deadline)
and raises :class:`~ringfence.config.problems.FieldProblems` naming each field at fault. The
``effective_*`` properties give the derived values of the timers that may be left unset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Self

from pydantic import model_validator

from ringfence.config.fields import _Model
from ringfence.config.problems import FieldProblems, Loc
from ringfence.units import Duration, duration_range, format_duration


class Timing(_Model):
    """Heartbeat, lease, watchdog and fencing timers. Defaults are safe; checked together."""

    heartbeat_interval: Annotated[Duration, duration_range(0.01, 10.0)] = 0.2
    heartbeat_timeout: Annotated[Duration, duration_range(0.02, 60.0)] | None = None
    host_lease_ttl: Annotated[Duration, duration_range(1.0, 600.0)] = 6.0
    watchdog_timeout: Annotated[Duration, duration_range(1.0, 600.0)] = 4.0
    safety_margin: Annotated[Duration, duration_range(0.0, 300.0, above=True)] = 1.0
    clock_margin: Annotated[Duration, duration_range(0.0, 60.0, above=True)] = 0.5
    manager_lease_ttl: Annotated[Duration, duration_range(0.5, 600.0)] | None = None
    fence_timeout: Annotated[Duration, duration_range(1.0, 600.0)] = 30.0
    cycle_budget: Annotated[Duration, duration_range(0.001, 60.0)] | None = None
    store_timeout: Annotated[Duration, duration_range(0.01, 300.0)] | None = None

    @property
    def effective_cycle_budget(self) -> float:
        """How long one decision cycle may take before it is journaled as `cycle_overrun`:
        ``cycle_budget``, or half a heartbeat interval. Heartbeats and the watchdog never wait
        for a decision cycle; a slow one only delays decisions."""
        if self.cycle_budget is not None:
            return self.cycle_budget
        return self.heartbeat_interval / 2

    @property
    def effective_store_timeout(self) -> float:
        """How long one store call may wait, over every endpoint: ``store_timeout``, or the
        longest that still lets a renewal that is due be tried twice before the self-fence
        deadline: ``(host_lease_ttl - safety_margin - host_lease_ttl / 3) / 2`` (1.5 s at
        the defaults). A slow store that answers within it never makes a host self-fence."""
        if self.store_timeout is not None:
            return self.store_timeout
        return (self.host_lease_ttl - self.safety_margin - self.host_lease_ttl / 3) / 2

    @property
    def effective_heartbeat_timeout(self) -> float:
        """``heartbeat_timeout``, or four heartbeat intervals when it is not set."""
        if self.heartbeat_timeout is not None:
            return self.heartbeat_timeout
        return 4 * self.heartbeat_interval

    @property
    def effective_manager_lease_ttl(self) -> float:
        """``manager_lease_ttl``, or a third of ``host_lease_ttl`` (at least five heartbeat
        intervals) when it is not set. Short, because a new leader can act only once the old
        leader's key has expired; safe at any length, because every manager write is guarded
        by the key's lease."""
        if self.manager_lease_ttl is not None:
            return self.manager_lease_ttl
        return max(self.host_lease_ttl / 3, 5 * self.heartbeat_interval)

    @model_validator(mode="after")
    def _check_timers(self) -> Self:
        problems: list[tuple[Loc, str]] = []

        def bad(field: str, *message: str) -> None:
            problems.append(((field,), "".join(message)))

        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None and value <= 0:
                bad(name, f"{name} must be longer than 0s")
        if problems:
            raise FieldProblems(problems)
        d = format_duration
        ttl = self.host_lease_ttl
        interval = self.heartbeat_interval
        timeout = self.effective_heartbeat_timeout
        if self.watchdog_timeout >= ttl:
            bad(
                "watchdog_timeout",
                f"watchdog_timeout ({d(self.watchdog_timeout)}) must be shorter than ",
                f"host_lease_ttl ({d(ttl)}), or a hung host could still run VMs after its ",
                "lease moved; lower watchdog_timeout or raise host_lease_ttl",
            )
        if self.heartbeat_timeout is not None and 2 * interval > timeout:
            bad(
                "heartbeat_timeout",
                f"heartbeat_timeout ({d(timeout)}) must be at least twice ",
                f"heartbeat_interval ({d(interval)}), or one late heartbeat would count as a ",
                f"lost link; set it to {d(2 * interval)} or more",
            )
        if timeout >= ttl and self.heartbeat_timeout is not None:
            bad(
                "heartbeat_timeout",
                f"heartbeat_timeout ({d(timeout)}) must be shorter than host_lease_ttl ",
                f"({d(ttl)}), so that heartbeats notice a lost host before its lease runs ",
                "out; lower heartbeat_timeout or raise host_lease_ttl",
            )
        elif timeout >= ttl:
            bad(
                "heartbeat_interval",
                f"the heartbeat timeout (4 × heartbeat_interval = {d(timeout)}) must be ",
                f"shorter than host_lease_ttl ({d(ttl)}), so that heartbeats notice a lost ",
                "host before its lease runs out; lower heartbeat_interval, set a shorter ",
                "heartbeat_timeout or raise host_lease_ttl",
            )
        if self.safety_margin >= ttl * 2 / 3:
            bad(
                "safety_margin",
                f"safety_margin ({d(self.safety_margin)}) must be shorter than two thirds ",
                f"of host_lease_ttl ({d(ttl)}): the lease is renewed every ",
                "host_lease_ttl/3, and a healthy host must keep petting its watchdog between ",
                "renewals; lower safety_margin or raise host_lease_ttl",
            )
        if not problems:
            self._check_call_budget(bad)
        if problems:
            raise FieldProblems(problems)
        return self

    def _check_call_budget(self, bad: Callable[..., None]) -> None:
        """Patroni's rule (`loop_wait + 2 * retry_timeout <= ttl`), ours: a renewal that is
        due (at a third of the lease) must be able to fail once and be tried again, each try
        waiting its full store timeout, before the self-fence deadline; and the heartbeat
        cycle, which pets the watchdog, must come round well within the watchdog timeout."""
        d = format_duration
        ttl, margin = self.host_lease_ttl, self.safety_margin
        works = (ttl - margin - ttl / 3) / 2
        if self.store_timeout is not None and ttl / 3 + 2 * self.store_timeout > ttl - margin:
            bad("store_timeout",
                f"store_timeout ({d(self.store_timeout)}) is too long: a renewal due at "
                f"host_lease_ttl/3 ({d(ttl / 3)}) that fails after store_timeout and is tried "
                f"again must end before the self-fence deadline, host_lease_ttl - "
                f"safety_margin ({d(ttl - margin)}); set store_timeout to {d(works)} or less")
        if self.watchdog_timeout <= 2 * self.heartbeat_interval:
            bad("watchdog_timeout",
                f"watchdog_timeout ({d(self.watchdog_timeout)}) must be longer than two "
                f"heartbeat intervals ({d(2 * self.heartbeat_interval)}): the heartbeat cycle "
                f"pets the watchdog, and one late cycle must not reset the host")
