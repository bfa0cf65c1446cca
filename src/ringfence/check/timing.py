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
from ringfence.core import leases
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


ETCD_HEARTBEAT = 0.1  # etcd's defaults, when the cluster file does not say
ETCD_ELECTION = 1.0


def _store_timing_findings(config: ClusterConfig, out: _Findings) -> None:
    """What etcd's own timers cost (issue 17): while it elects a new leader the store answers
    nobody, for one to two election timeouts, and then every lease restarts at full TTL. So
    the failover time depends on what died with a host; each kind of victim is said apart."""
    from ringfence.store.factory import store_kind

    if store_kind(config) != "etcd":
        return
    t = config.timing
    beat = config.store.heartbeat_interval or ETCD_HEARTBEAT
    election = config.store.election_timeout or ETCD_ELECTION
    said = "" if config.store.election_timeout else " (etcd's default; set store.election_timeout)"
    if election < 5 * beat:
        out.add("warning", "etcd_timers", None,
                f"etcd's election timeout ({_dur(election)}) is under five of its heartbeat "
                f"intervals ({_dur(beat)}): etcd's own guidance is about ten; a member that "
                f"misses two heartbeats starts an election and the store stalls for everyone")
    outage = 2 * election  # an election may need a second round (split vote)
    fresh = t.host_lease_ttl - t.safety_margin
    renew = leases.renewal_interval(t)
    if outage + renew >= fresh:
        out.add("warning", "etcd_election_vs_lease", None,
                f"an etcd election can keep the store silent for up to {_dur(outage)} "
                f"(2 x election_timeout {_dur(election)}{said}); with a renewal every "
                f"{_dur(renew)}, a lease may then be older than host_lease_ttl - safety_margin "
                f"({_dur(fresh)}) before it can be renewed, and hosts without failsafe stop "
                f"their VMs at every etcd leader change; raise host_lease_ttl above "
                f"{_dur(outage + renew + t.safety_margin)} or lower etcd's election timeout")
    detect = t.effective_heartbeat_timeout
    watchdog = _watchdog_recovery(config)
    out.add("info", "failover_by_victim", None,
            f"failover by what dies with a host (etcd election {_dur(election)}-{_dur(outage)}"
            f"{said}): with a fence agent, detection {_dur(detect)} then the fence agent's "
            f"time when the host held neither leader or only the ringfence leader (its "
            f"successor takes over on evidence), and {_dur(max(detect, election))}-"
            f"{_dur(max(detect, outage))} then the fence agent's time when it held the etcd "
            f"leader (nothing is decided while the store elects); by the watchdog rule, "
            f"{_dur(watchdog)} after the host's last renewal, or up to "
            f"{_dur(outage + watchdog)} after its death when it held the etcd leader (every "
            f"lease restarts at full host_lease_ttl after the election)")
