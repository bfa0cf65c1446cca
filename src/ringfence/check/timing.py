"""Findings about the timers: the watchdog's margin under the host lease; when a host cut off
from the store stops its VMs and is reset, compared with when its VMs may move; whether the
heartbeat timeout lets a lossy link flap. Also the watchdog-only recovery time, which the
fencing findings quote.

Nothing here raises for a validated configuration.
"""

from __future__ import annotations

from ringfence.check.results import _Findings
from ringfence.check.words import _dur
from ringfence.config import ClusterConfig
from ringfence.core.leases import watchdog_wait


def _watchdog_recovery(config: ClusterConfig) -> float:
    return config.timing.host_lease_ttl + watchdog_wait(config.timing)


def _timing_findings(config: ClusterConfig, out: _Findings) -> None:
    t = config.timing
    ttl, wd, sm = t.host_lease_ttl, t.watchdog_timeout, t.safety_margin
    out.add("info", "timing_watchdog", None,
            f"watchdog_timeout ({_dur(wd)}) is {_dur(ttl - wd)} shorter than host_lease_ttl "
            f"({_dur(ttl)})")
    # After its last renewal a cut-off host stops its VMs at ttl - sm and, if hung instead,
    # is reset by its watchdog at most ttl - sm + wd later; the store drops the lease no
    # earlier than ttl, and the manager waits wd + clock_margin more before moving anything.
    reset_by = ttl - sm + wd
    moved_from = ttl + watchdog_wait(t)
    out.add("info", "timing_headroom", None,
            f"after its last renewal, a host cut off from the store stops its VMs at "
            f"{_dur(ttl - sm)} (host_lease_ttl - safety_margin) and, if it hangs instead, its "
            f"watchdog resets it by {_dur(reset_by)}; its VMs move no earlier than "
            f"{_dur(moved_from)} (host_lease_ttl + watchdog_timeout + clock_margin): "
            f"{_dur(moved_from - reset_by)} of margin (safety_margin + clock_margin)")
    interval, timeout = t.heartbeat_interval, t.effective_heartbeat_timeout
    if 3 * interval > timeout + 1e-9:
        out.add("warning", "timing_heartbeat", None,
                f"the heartbeat timeout ({_dur(timeout)}) is shorter than three heartbeat "
                f"intervals ({_dur(3 * interval)}): two late or lost datagrams in a row mark a "
                f"link down, so a lossy link flaps; set heartbeat_timeout to "
                f"{_dur(3 * interval)} or more")
    else:
        out.add("info", "timing_heartbeat", None,
                f"a silent link is noticed after {_dur(timeout)} "
                f"({timeout / interval:g} heartbeat intervals of {_dur(interval)})")
