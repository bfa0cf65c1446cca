""":func:`analyse`: run every rule over a validated cluster and sort the findings
(severity, then the failure they are about in report order, then kind and text), so that the
same file always gives the same report.

Does not raise for a validated configuration.
"""

from __future__ import annotations

from ringfence.alerts.shared_fate import alerting_findings
from ringfence.check.alerts import _alert_findings
from ringfence.check.design import _design_findings
from ringfence.check.drills import DrillRecords, _drill_findings
from ringfence.check.failures import _Cluster, _single_failures
from ringfence.check.policy import _policy_findings
from ringfence.check.results import CheckReport, Finding, _Findings
from ringfence.check.shared_fate import _failure_findings, _start_findings
from ringfence.check.timing import _store_timing_findings, _timing_findings
from ringfence.config import ClusterConfig

_SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}
_KIND_ORDER: dict[str, int] = {
    "quorum_lost": 0, "cluster_lost": 1, "vm_without_place": 2, "group_broken": 3,
    "host_lost": 4,
}


def analyse(config: ClusterConfig, drills: DrillRecords | None = None) -> CheckReport:
    """Analyse a validated cluster for shared fate; see :mod:`ringfence.check` for the model.

    *drills*: the fence drill records to judge (:mod:`ringfence.check.drills`); None leaves
    drills out of the report (the file alone says nothing about them)."""
    cluster = _Cluster(config)
    out = _Findings()
    _start_findings(cluster, out)
    singles = _single_failures(cluster)
    for outcome in singles:
        _failure_findings(cluster, outcome, out)
    _design_findings(cluster, out)
    _drill_findings(config, drills, out)
    _timing_findings(config, out)
    _store_timing_findings(config, out)
    _alert_findings(config, out)
    for finding in alerting_findings(config, cluster.start):
        out.add(*finding)
    _policy_findings(cluster, singles, out)
    failure_rank = {o.result.failure: i for i, o in enumerate(singles)}

    def order(finding: Finding) -> tuple[int, int, int, str, str]:
        rank = -1 if finding.failure is None else failure_rank.get(finding.failure, -1)
        kind = _KIND_ORDER.get(finding.kind, len(_KIND_ORDER))
        return (_SEVERITY_ORDER[finding.severity], rank, kind, finding.kind, finding.text)

    return CheckReport(
        cluster=config.name,
        hosts=len(config.hosts),
        witnesses=len(config.witnesses),
        networks=len(config.networks),
        vms=len(config.vms),
        store_members=tuple(cluster.members),
        placement=tuple(sorted(cluster.start.items())),
        failures=tuple(o.result for o in singles),
        findings=tuple(sorted(out.items, key=order)),
    )
