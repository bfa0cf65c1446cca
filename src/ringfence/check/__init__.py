"""`ringfence check`: validate a cluster file, then look for shared fate before it bites.

:func:`analyse` takes a validated :class:`~ringfence.config.ClusterConfig` and answers, for every
single failure, what would happen to the cluster's VMs, anti-affinity groups, store quorum and
alert routes; it adds static checks of timing, quorum design, heartbeat redundancy, fencing and
``policy.host_failures_to_tolerate``. :func:`render_text` and :func:`to_json` present the
:class:`CheckReport`; :func:`run_check` is the command (load, analyse, print, exit code).

The model of a failure (the same connectivity rules as the simulator):

* Failures analysed, one at a time: every host (powered off: its VMs die, its store member with
  it); every network (lost on every host and witness at once); every witness (down, and with it
  its store member); every store member that runs on a host (the store process dies, the host
  and its VMs keep running). A witness's store member fails only with the witness, so it is not
  listed twice.
* Two endpoints (hosts or witnesses) talk while they share a network that the failure did not
  take. The store keeps quorum while a majority of ``config.store_members()`` are up and all talk
  to each other; a host reaches the store while it talks to every member of such a majority.
* A host counts as *lost* when it fails, when it is left on no heartbeat network (one of two
  peers can not tell a lost link from a lost host: seed 002; with a single host there are no
  peers and the rule does not apply), or when it reaches no store majority (its agent stops its
  VMs and self-fences once its lease is older than ``host_lease_ttl - safety_margin``). The
  other hosts *survive* and may receive VMs.
* Starting placement: VMs with ``host:`` run there; the others are placed first on the whole
  cluster with :func:`ringfence.core.placement.plan`. After a failure the VMs of lost hosts are
  placed again with ``plan`` on the survivors, whose free room is their CPUs and memory minus
  the VMs already on them. ``plan`` never overcommits and never puts two members of an
  anti-affinity group on one host: a VM that fits nowhere has *no place* and stays down.
* An anti-affinity group is *broken* by a failure when some of its members had to move and they
  can not all run on distinct hosts afterwards (a group of N needs N distinct surviving hosts
  with room). It is *down together* when every member ran on a lost host.
* Alert routes: ``deadman`` is an outside watcher (it notices the cluster's silence); ``log``
  never leaves the cluster; the others are sent by the cluster's manager, so they need a
  surviving host, and a route whose address names a VM of the cluster (its name, the first label
  of its host name, or the VM's ``verify`` address) goes through that VM and is down while that
  VM is (seed 001: the ticketing system ran on the hypervisor that failed).

Severities: ``error`` when a single failure (or the starting placement) leaves a VM without a
place, breaks an anti-affinity group, or leaves no host running (store quorum lost for the whole
cluster, or every host lost otherwise); ``warning`` for shared fate that degrades recovery or
alerting, and for risky design (two nodes without a witness, an even number of store members,
one heartbeat network, tight timers, ``host_failures_to_tolerate`` not met) and for fencing
never drilled, failed or last drilled long ago (with ``--state-dir``, the drill records of
``ringfence fence test``); ``info`` for figures worth knowing (timing margins, the
watchdog-only recovery time, fence paths, a drill that ran ``status`` only).
:attr:`CheckReport.exit_code` is 1 when there is any error, else 0.

Errors: :func:`analyse`, :func:`render_text` and :func:`to_json` do not raise for a validated
configuration. :func:`run_check` lets :class:`ringfence.errors.ConfigError` propagate (the file
can not be read, parsed or validated; the command line turns it into exit code 2).

Everything is deterministic: failures, hosts, VMs, groups and findings are reported in sorted
order, and the same file always gives the same report, byte for byte.

Where things are (import them from ``ringfence.check``, which re-exports every public name):

* :mod:`~ringfence.check.results`: :class:`CheckReport`, :class:`Finding`,
  :class:`FailureResult` and the other result types.
* :mod:`~ringfence.check.failures`: the model of a failure described above (connectivity,
  store majority, lost hosts, placement after the failure).
* The rules, one concern each: :mod:`~ringfence.check.shared_fate` (places, groups, quorum,
  failure by failure), :mod:`~ringfence.check.alerts` (alert and deadman routes),
  :mod:`~ringfence.check.design` (witness, store members, heartbeat networks, fencing),
  :mod:`~ringfence.check.drills` (fence drills never run, failed or old),
  :mod:`~ringfence.check.timing` (timer margins), :mod:`~ringfence.check.policy`
  (``host_failures_to_tolerate``); :mod:`~ringfence.check.words` has their shared wording.
* :mod:`~ringfence.check.analysis`: :func:`analyse`, which runs the rules and orders findings.
* :mod:`~ringfence.check.render`: :func:`render_text`, :func:`to_json`.
* :mod:`~ringfence.check.command`: :func:`load_any`, :func:`read_drills`, :func:`run_check`.
"""

from __future__ import annotations

from ringfence.check.analysis import analyse
from ringfence.check.command import load_any, read_drills, run_check
from ringfence.check.drills import DRILL_MAX_AGE_DAYS, DrillRecords
from ringfence.check.render import render_text, to_json
from ringfence.check.results import (
    CheckReport,
    FailureKind,
    FailureResult,
    Finding,
    LostHost,
    Severity,
    UnplacedVM,
)

__all__ = [
    "DRILL_MAX_AGE_DAYS",
    "CheckReport",
    "DrillRecords",
    "FailureKind",
    "FailureResult",
    "Finding",
    "LostHost",
    "Severity",
    "UnplacedVM",
    "analyse",
    "load_any",
    "read_drills",
    "render_text",
    "run_check",
    "to_json",
]
