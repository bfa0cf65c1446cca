"""Alert delivery in the simulator: which route reaches its receiver, and when.

Each alert is offered to every route of ``cluster.alerts`` that takes it (`alerts.routes.wants`:
its kind sends alerts, the severity reaches its `min_severity`). A route is reachable while the
address it sends to is up, as far as the cluster file tells (`alerts.shared_fate.address_owner`):

* an address of a host of the cluster (its name, or an interface address) is up while that host
  runs (powered and not hung);
* an address of a VM of the cluster (its name, or its ``verify`` address) is up while that VM
  runs on a host that runs;
* any other address is outside the cluster, and always up (the simulator models no outside
  network).

Delivery follows the real worker (`alerts.routes.deliver`): an attempt at once, and after a
failed one (which takes the route's `timeout`) a retry after 1 s, 2 s, 4 s … up to `retries`
retries; the first attempt that finds the receiver up delivers the alert. Each outcome is
journaled as the real worker journals it (`alert_delivered` / `alert_failed`: `target` the
route, `method` its kind, `count` attempts, `duration` seconds since the alert, `reason`) and
kept in `World.alert_deliveries` for scenario expectations (``alert:`` with ``route:`` and
``delivered:``). Not modelled: the outbox and the leader's takeover (an alert is delivered by
whoever raised it), rate limits, resolutions, the dead-man's switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringfence.alerts.models import Alert
from ringfence.alerts.routes import BACKOFF, AlertMessage, wants
from ringfence.alerts.shared_fate import address_owner
from ringfence.core.events import Fact

if TYPE_CHECKING:
    from ringfence.sim.world import World

__all__ = ["AlertDelivery", "offer", "unreachable"]


@dataclass(frozen=True)
class AlertDelivery:
    """One route's outcome for one alert: `t` when it was delivered or given up."""

    t: float
    route: str
    text: str
    severity: str
    delivered: bool
    attempts: int
    reason: str


def unreachable(world: World, route: Alert) -> str | None:
    """Why the route's receiver can not be reached now; None when it can."""
    address = route.url or route.smtp or ""
    owner = address_owner(world.config, address) if address else None
    if owner is None:
        return None
    kind, name = owner
    if kind == "host":
        power = world.hosts[name].power.value
        return None if power == "up" else f"its receiver is on {name}, which is {power}"
    on = [h for (vm, h) in world.open_runs if vm == name and world.hosts[h].power.value == "up"]
    return None if on else f"its receiver is VM {name}, which does not run"


def offer(world: World, severity: str, text: str, host: str | None, vm: str | None,
          by: str | None) -> None:
    """Offer one alert, raised now, to every route that takes it (see the module)."""
    message = AlertMessage("sim", severity, text, host, vm, world.config.name, by or "", 0.0)
    for route in world.config.alerts:
        if wants(route, message):
            _attempt(world, route, message, by, world.now, 1)


def _attempt(world: World, route: Alert, message: AlertMessage, by: str | None,
             raised: float, attempt: int) -> None:
    why = unreachable(world, route)
    if why is None:
        _done(world, route, message, by, raised, attempt, True, "acknowledged")
        return
    if attempt > route.retries:
        world.at(world.now + route.timeout,
                 lambda: _done(world, route, message, by, raised, attempt, False, why))
        return
    world.at(world.now + route.timeout + BACKOFF * 2 ** (attempt - 1),
             lambda: _attempt(world, route, message, by, raised, attempt + 1))


def _done(world: World, route: Alert, message: AlertMessage, by: str | None, raised: float,
          attempts: int, delivered: bool, reason: str) -> None:
    world.alert_deliveries.append(AlertDelivery(world.now, route.label, message.text,
                                                message.severity, delivered, attempts, reason))
    world.journal_fact(Fact("alert_delivered" if delivered else "alert_failed", by,
                            host=message.host, vm=message.vm, target=route.label,
                            method=route.kind, severity=message.severity, detail=message.text,
                            count=attempts, duration=world.now - raised, reason=reason))
