"""`/metrics`: the cluster as Prometheus metrics, rendered from the current snapshot at each
scrape (a custom collector: nothing is kept between scrapes but the snapshot cache).

Names follow ClusterLabs' ha_cluster_exporter (one gauge per state with the state as a label,
value 1 for the current one); every name starts with ``ringfence_``. The list, with labels, is
in docs/operations.md ("Metrics"). Counters (``*_total``) count the events of the journal
window the store keeps (`journal.store_mirror.KEEP` events per host): they start again from
what is kept when old events are trimmed, which Prometheus' ``rate()`` treats as a reset.

The counters of refused heartbeats (authentication failures, replays) are not in the store:
each agent's `/metrics` has its own (`api.heartbeats`), since its agent started.

Failure semantics: a scrape never fails because the store does not answer: the quorum gauge
is 0, the host and VM gauges say ``unknown`` and no alert is owed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ringfence.api.heartbeats import HeartbeatCounters
from ringfence.api.source import ClusterSource
from ringfence.api.views import Snapshot, Snapshots

__all__ = ["HOST_STATES", "VM_STATES", "RingfenceCollector", "heartbeat_metrics", "host_state",
           "install_metrics", "vm_state"]

HOST_STATES = ("online", "jeopardy", "maintenance", "degraded", "ineligible", "suspect",
               "fenced", "offline", "never_joined", "unknown")
VM_STATES = ("running", "moving", "pending", "released", "stopped", "unknown")
FENCE_PATHS = (("fence_agent", "success"), ("fence_agent", "failure"), ("watchdog", "success"))
FAILOVER_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def host_state(state: str) -> str:
    """`ringfence status`'s words as one of `HOST_STATES`."""
    if state.startswith("suspect"):
        return "suspect"
    if state == "never joined":
        return "never_joined"
    return state if state in HOST_STATES else "unknown"


def vm_state(state: str, host: str | None) -> str:
    """`ringfence status`'s VM words as one of `VM_STATES`."""
    if state.startswith("stopped by"):
        return "stopped"
    if state.startswith("moving"):
        return "moving"
    if state in ("pending", "released"):
        return state
    return "running" if host else "unknown"


HeartbeatSnapshots = Callable[[], Sequence[HeartbeatCounters]]


class RingfenceCollector(Collector):
    """`heartbeats`: the counters of the heartbeats this process's agent refused (none for a
    process without an agent, e.g. the demo's)."""

    def __init__(self, source: ClusterSource, snapshots: Snapshots,
                 heartbeats: HeartbeatSnapshots | None = None) -> None:
        self.source = source
        self.snapshots = snapshots
        self.heartbeats = heartbeats

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshots.take()
        yield from self._cluster(snap)
        yield from self._hosts(snap)
        yield from self._vms(snap)
        yield from self._journal(snap)
        yield from self._alerts(snap)
        if self.heartbeats is not None:
            yield from heartbeat_metrics(self.heartbeats())

    def _alerts(self, snap: Snapshot) -> Iterator[Metric]:
        from ringfence.api.alert_view import delivery_counts, owed_counts

        deliveries = CounterMetricFamily(
            "ringfence_alert_deliveries",
            "alert deliveries by route and outcome (delivered, failed, rate_limited)",
            labels=["route", "method", "outcome"])
        for (route, method, outcome), count in sorted(delivery_counts(snap.journal).items()):
            deliveries.add_metric([route, method, outcome], float(count))
        owed = GaugeMetricFamily("ringfence_alert_outbox_owed",
                                 "alerts in the store's outbox that the route still owes",
                                 labels=["route"])
        for route, count in sorted(owed_counts(snap.outbox, self.source.config.alerts).items()):
            owed.add_metric([route], float(count))
        yield from (deliveries, owed)

    def _cluster(self, snap: Snapshot) -> Iterator[Metric]:
        quorum = GaugeMetricFamily("ringfence_store_quorum",
                                   "1 when the store answers this host (a majority)")
        quorum.add_metric([], 1.0 if snap.quorum else 0.0)
        yield quorum
        revision = snap.status["store"].get("revision")
        if revision is not None:
            rev = GaugeMetricFamily("ringfence_store_revision", "the store's revision")
            rev.add_metric([], float(revision))
            yield rev
        leader = GaugeMetricFamily("ringfence_cluster_leader",
                                   "1 for the host that holds the manager key", labels=["host"])
        for spec in self.source.config.hosts:
            leader.add_metric([spec.name], 1.0 if snap.status.get("leader") == spec.name
                              else 0.0)
        yield leader
        incidents = GaugeMetricFamily("ringfence_incidents_open", "open incidents")
        incidents.add_metric([], float(sum(1 for i in snap.incidents if i.open)))
        yield incidents

    def _hosts(self, snap: Snapshot) -> Iterator[Metric]:
        state = GaugeMetricFamily("ringfence_host_state",
                                  "1 for the host's current state, 0 for the others",
                                  labels=["host", "state"])
        age = GaugeMetricFamily("ringfence_host_lease_age_seconds",
                                "how old the host's lease is (since its last renewal)",
                                labels=["host"])
        failsafe = GaugeMetricFamily("ringfence_host_failsafe",
                                     "1 while the host keeps its VMs in failsafe",
                                     labels=["host"])
        link = GaugeMetricFamily("ringfence_link_up",
                                 "1 when `host` hears `peer` on heartbeat network `network`",
                                 labels=["host", "peer", "network"])
        for view in snap.hosts(self.source):
            current = host_state(view.state)
            for name in HOST_STATES:
                state.add_metric([view.name, name], 1.0 if name == current else 0.0)
            if view.lease_age_s is not None:
                age.add_metric([view.name], view.lease_age_s)
            failsafe.add_metric([view.name], 1.0 if view.failsafe else 0.0)
            for peer, links in view.links.items():
                for network in links.alive:
                    link.add_metric([view.name, peer, network], 1.0)
                for network in links.dead:
                    link.add_metric([view.name, peer, network], 0.0)
        yield from (state, age, failsafe, link)

    def _vms(self, snap: Snapshot) -> Iterator[Metric]:
        counts = GaugeMetricFamily("ringfence_vms", "VMs in each state", labels=["state"])
        placed = GaugeMetricFamily("ringfence_vm_host", "1 for the host a VM's lease names",
                                   labels=["vm", "host"])
        tally: Counter[str] = Counter()
        for view in snap.vms(self.source):
            tally[vm_state(view.state, view.host)] += 1
            if view.host:
                placed.add_metric([view.name, view.host], 1.0)
        for name in VM_STATES:
            counts.add_metric([name], float(tally[name]))
        yield counts
        yield placed

    def _journal(self, snap: Snapshot) -> Iterator[Metric]:
        kinds: Counter[str] = Counter()
        fences: Counter[tuple[str, str]] = Counter()
        alerts: Counter[str] = Counter()
        for entry in snap.journal:
            kind = str(entry.get("kind"))
            kinds[kind] += 1
            if kind == "fence_agent_ok":
                fences[("fence_agent", "success")] += 1
            elif kind == "fence_agent_failed":
                fences[("fence_agent", "failure")] += 1
            elif kind == "host_fenced" and str(entry.get("method")).startswith("watchdog"):
                fences[("watchdog", "success")] += 1  # proven by its lease and watchdog
            elif kind == "alert_sent":
                alerts[str(entry.get("severity") or "unknown")] += 1
        restarts = CounterMetricFamily("ringfence_vm_restarts",
                                       "VMs restarted in place after they died")
        restarts.add_metric([], float(kinds["vm_restarted"]))
        recoveries = CounterMetricFamily("ringfence_vm_recoveries",
                                         "VM leases moved to a new host by the leader")
        recoveries.add_metric([], float(kinds["vm_recovered"]))
        fenced = CounterMetricFamily(
            "ringfence_fences", "fences by path (fence_agent: a power fence answered; "
            "watchdog: proven by the lease and the watchdog deadline) and outcome",
            labels=["path", "outcome"])
        for path, outcome in FENCE_PATHS:
            fenced.add_metric([path, outcome], float(fences[(path, outcome)]))
        sent = CounterMetricFamily("ringfence_alerts", "alerts journaled, by severity",
                                   labels=["severity"])
        for severity, count in sorted(alerts.items()):
            sent.add_metric([severity], float(count))
        self_fences = CounterMetricFamily("ringfence_self_fences",
                                          "hosts that stopped their VMs to keep the rules")
        self_fences.add_metric([], float(kinds["self_fence"]))
        yield from (restarts, recoveries, fenced, sent, self_fences)
        durations = sorted(v.downtime_s for i in snap.incidents for v in i.vms
                           if not v.still_down and not v.moved_live)
        buckets = [(str(b), float(sum(1 for d in durations if d <= b)))
                   for b in FAILOVER_BUCKETS] + [("+Inf", float(len(durations)))]
        histogram = HistogramMetricFamily(
            "ringfence_failover_duration_seconds",
            "per VM and incident: how long it was down until it ran again",
            buckets=buckets, sum_value=sum(durations))
        yield histogram


def heartbeat_metrics(snapshots: Sequence[HeartbeatCounters]) -> Iterator[Metric]:
    """The refused heartbeats of each snapshot (`api.heartbeats`), every peer and network
    present (0 until something is refused)."""
    failures = CounterMetricFamily(
        "ringfence_heartbeat_auth_failures",
        "heartbeats `host` received on `network` whose HMAC is wrong (forged, another key "
        "or cluster)", labels=["host", "network"])
    replays = CounterMetricFamily(
        "ringfence_heartbeat_replays",
        "authentic heartbeats from `peer` seen before (a replay), refused",
        labels=["host", "peer", "network"])
    stale = CounterMetricFamily(
        "ringfence_heartbeat_stale",
        "authentic heartbeats from `peer` not echoing this life of `host` (recorded earlier, "
        "or the peer has not heard it yet), refused", labels=["host", "peer", "network"])
    other = CounterMetricFamily(
        "ringfence_heartbeat_dropped",
        "datagrams that are no heartbeat of this cluster (malformed) or are addressed to "
        "another host (misdirected)", labels=["host", "reason"])
    for counters in snapshots:
        for network, count in sorted(counters.auth_failures.items()):
            failures.add_metric([counters.host, network], float(count))
        for (peer, network), count in sorted(counters.replays.items()):
            replays.add_metric([counters.host, peer, network], float(count))
        for (peer, network), count in sorted(counters.stale.items()):
            stale.add_metric([counters.host, peer, network], float(count))
        other.add_metric([counters.host, "malformed"], float(counters.malformed))
        other.add_metric([counters.host, "misdirected"], float(counters.misdirected))
    yield from (failures, replays, stale, other)


def install_metrics(app: FastAPI, source: ClusterSource, snapshots: Snapshots,
                    heartbeats: HeartbeatSnapshots | None = None) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RingfenceCollector(source, snapshots, heartbeats))

    @app.get("/metrics", response_class=Response, tags=["metrics"],
             responses={200: {"content": {"text/plain": {}}}})
    def metrics() -> Response:
        return Response(generate_latest(registry),
                        media_type="text/plain; version=0.0.4; charset=utf-8")
