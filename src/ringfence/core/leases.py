"""The lease rules of the safety protocol (DESIGN.md, "Safety protocol"), as pure functions,
and the store keys they govern.

Why these rules are safe, in one paragraph: a host only runs VMs while its last successful lease
renewal (timed from when the request was *sent*) is younger than `host_lease_ttl -
safety_margin`, and it pets its watchdog only under the same condition. The store expires the
lease no earlier than `host_lease_ttl` after that renewal reached it. So by the time the store
reports the lease gone, the host has stopped its VMs by itself, or is hung; a hung host's
watchdog fires at most `watchdog_timeout` after its last pet. The manager waits for
`watchdog_timeout + clock_margin` after it first *sees* the lease gone, measured on its own
clock, before it moves a VM: no two clocks are ever compared, only durations.
"""

from __future__ import annotations

from ringfence.config import Timing

MANAGER_KEY = "manager"
HOSTS_PREFIX = "hosts/"
VMS_PREFIX = "vms/"
MIGRATE_PREFIX = "requests/migrate/"


def migrate_request_key(vm: str) -> str:
    """An operator's live-migration request: `{"to": host, "by": operator}`."""
    return f"{MIGRATE_PREFIX}{vm}"


def host_lease_key(host: str) -> str:
    """Attached to the host's lease; its presence means "this host may run VMs"."""
    return f"hosts/{host}/lease"


def host_info_key(host: str) -> str:
    """Not leased: the host's incarnation, bumped at every registration."""
    return f"hosts/{host}/info"


def host_fenced_key(host: str) -> str:
    """Written by the manager once a host's incarnation is proven fenced."""
    return f"hosts/{host}/fenced"


def host_offline_key(host: str) -> str:
    """Written by a host's agent on a clean shutdown, after its VMs were stopped."""
    return f"hosts/{host}/offline"


def host_health_key(host: str) -> str:
    """Attached to the host's lease: `{"state": eligible|degraded|ineligible, "reasons"}`."""
    return f"hosts/{host}/health"


def host_links_key(host: str) -> str:
    """Attached to the host's lease: its own view of each peer's heartbeat links."""
    return f"hosts/{host}/links"


def host_maintenance_key(host: str) -> str:
    """Not leased (maintenance survives reboots): `{"by": operator, "reason": ...}`."""
    return f"hosts/{host}/maintenance"


def vm_owner_key(vm: str) -> str:
    """`{"host": name | None}`; its mod_revision is the VM's fencing token."""
    return f"vms/{vm}/owner"


def renewal_interval(timing: Timing) -> float:
    return timing.host_lease_ttl / 3


def lease_is_fresh(renewal_age: float, timing: Timing) -> bool:
    """May a host run VMs (and pet its watchdog) when its last renewal is this old?"""
    return renewal_age < timing.host_lease_ttl - timing.safety_margin


def watchdog_wait(timing: Timing) -> float:
    """How long after the store reports a host's lease gone its watchdog has surely fired."""
    return timing.watchdog_timeout + timing.clock_margin


def proven_by_expiry(seen_gone_for: float, timing: Timing) -> bool:
    return seen_gone_for >= watchdog_wait(timing)
