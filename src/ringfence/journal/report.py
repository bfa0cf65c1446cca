"""The post-incident report, as Markdown and as one self-contained HTML page.

Both formats are rendered from one list of sections (:func:`report_sections`), so they always
say the same thing: summary, customer impact (every VM, its downtime, where it ran before and
after), timeline, detection, fencing, recovery, verification, root-cause evidence (which NIC
lost carrier and when, corrected memory errors, storage probe errors, renamed interfaces with
their old and new names), operator actions (forced starts with the operator's name), and
recommendations derived from that evidence (:func:`recommendations`).

Decided here:

- Times are ``t+12.3s`` for a simulation (seconds from the start of the run) and UTC wall-clock
  times for real journals (:class:`ReportContext` says which).
- A downtime that nobody observed exactly (a host lost with no surviving peer to see it) is
  shown as an upper bound (``≤``) with the interval in which the VM stopped.
- An incident resolved without verification says so in capitals, in the summary and in the
  verification section; so does an open incident.
- The HTML page needs nothing from outside: inline CSS (with print rules: A4, no backgrounds
  needed, sections kept together), an inline SVG chart of hosts and VMs over the incident with
  fault and recovery markers, no JavaScript, no web fonts, an empty inline favicon.

Rendering never raises for a well-formed :class:`Incident`; writing files raises ``OSError``
as the file system does.

The parts: `report_blocks` (context, formats, blocks), `report_sections` (what each section
says), `recommendations`, `timeline_svg`, `report_render` (Markdown, HTML, indexes, files);
this module holds where the events come from (`load_source`) and re-exports the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ringfence.journal.events import Event
from ringfence.journal.incidents import Incident
from ringfence.journal.recommendations import ALERTING_VM, recommendations
from ringfence.journal.report_blocks import ReportContext, Section, fmt_duration, fmt_time
from ringfence.journal.report_render import (
    CSS,
    render_html,
    render_index_html,
    render_index_markdown,
    render_markdown,
    write_reports,
)
from ringfence.journal.report_sections import report_sections
from ringfence.journal.timeline_svg import timeline_svg

if TYPE_CHECKING:
    from ringfence.sim.runner import SimulationResult

__all__ = [
    "ALERTING_VM",
    "CSS",
    "DEFAULT_STATE_DIR",
    "IncidentSource",
    "ReportContext",
    "Section",
    "context_for_simulation",
    "default_journal",
    "find_incident",
    "fmt_duration",
    "fmt_time",
    "incidents_of_simulation",
    "load_source",
    "recommendations",
    "render_html",
    "render_index_html",
    "render_index_markdown",
    "render_markdown",
    "report_sections",
    "timeline_svg",
    "write_reports",
]


# ====================================================================== simulations
def context_for_simulation(result: SimulationResult) -> ReportContext:
    scenario = result.scenario
    return ReportContext(
        cluster=scenario.cluster.name if scenario.cluster.name != "cluster" else scenario.name,
        simulated=True, source=f"simulation of scenario {scenario.name} (seed {result.seed})",
        description=scenario.description or None, config=result.world.config)


def incidents_of_simulation(result: SimulationResult) -> tuple[list[Incident], ReportContext]:
    """A simulated run's incidents (from its journal alone) and the context to report them."""
    from ringfence.journal.events import from_world
    from ringfence.journal.incidents import build_incidents

    incidents = build_incidents(from_world(result.world), stream_end=result.scenario.duration)
    ctx = context_for_simulation(result)
    return incidents, ReportContext(
        cluster=ctx.cluster, simulated=True, source=ctx.source, description=ctx.description,
        config=ctx.config, incidents=tuple(incidents))


# ====================================================================== sources (CLI)
DEFAULT_STATE_DIR = Path("/var/lib/ringfence")


@dataclass(frozen=True)
class IncidentSource:
    """Everything the incident commands need from one source of events."""

    events: Sequence[Event]
    incidents: Sequence[Incident]
    context: ReportContext
    hosts_state: dict[str, str]
    now: float


def default_journal() -> tuple[Path, Path | None]:
    """Where the journal is when none is given: the agents' state directory
    (:data:`DEFAULT_STATE_DIR`), else the state directory of a running `ringfence demo` (found
    as `ringfence status` finds it), with that demo's cluster file. ConfigError if neither."""
    from ringfence.errors import ConfigError
    from ringfence.status import running_demo

    if DEFAULT_STATE_DIR.is_dir():
        return DEFAULT_STATE_DIR, None
    demo = running_demo()
    if demo is not None and (demo.parent / "state").is_dir():
        return demo.parent / "state", demo
    raise ConfigError(f"no journal at {DEFAULT_STATE_DIR} (the agents' --state-dir) and no "
                      f"running demo: give --journal DIR|FILE or --scenario SCENARIO.yaml",
                      file=str(DEFAULT_STATE_DIR))


def load_source(*, journal: Sequence[str] | None = None, scenario: str | None = None,
                seed: int | None = None, config: str | None = None,
                now: float | None = None) -> IncidentSource:
    """Events from hosts' journals (files or state directories; default
    :data:`DEFAULT_STATE_DIR`) or from a scenario simulated on the spot, and the incidents built
    from them. `config` (a cluster file) names the cluster and its VMs in reports; `now` is
    when a journal stream ends (default: its last event). Raises :class:`ConfigError` for bad
    input (both sources given, a missing journal, an invalid file)."""
    from ringfence.errors import ConfigError
    from ringfence.journal.events import from_journal_files
    from ringfence.journal.incidents import build_incidents, final_host_states

    if journal and scenario:
        raise ConfigError("give either --journal or --scenario, not both", path="--scenario")
    if scenario:
        from ringfence.sim.runner import simulate
        from ringfence.sim.scenario import load_scenario

        result = simulate(load_scenario(scenario), seed)
        incidents, ctx = incidents_of_simulation(result)
        from ringfence.journal.events import from_world

        duration = result.scenario.duration
        states = {h.name: result.world.host_state(h.name, duration)
                  for h in result.world.config.hosts}
        return IncidentSource(from_world(result.world), incidents, ctx, states, duration)
    paths: Sequence[str] = journal or []
    if not journal:
        found, demo_config = default_journal()
        paths = [str(found)]
        config = config or (str(demo_config) if demo_config else None)
    source = from_journal_files(paths)
    cluster_config = None
    if config:
        from ringfence.config import load_cluster

        cluster_config = load_cluster(config)
    last = source.events[-1].t if source.events else 0.0
    end = max(last, now) if now is not None else last
    incidents = build_incidents(source.events, stream_end=end)
    names = ", ".join(str(p) for p in source.files)
    skipped = f"; {source.skipped} torn line(s) skipped" if source.skipped else ""
    ctx = ReportContext(cluster=cluster_config.name if cluster_config else "cluster",
                        simulated=False, source=f"journals {names}{skipped}",
                        config=cluster_config, incidents=tuple(incidents))
    return IncidentSource(source.events, incidents, ctx, final_host_states(source.events), end)


def find_incident(incidents: Sequence[Incident], wanted: str) -> Incident:
    """The incident called `wanted` (``INC-0002``, ``inc-2`` or ``2``); ConfigError if none."""
    from ringfence.errors import ConfigError

    text = wanted.strip().upper().removeprefix("INC-")
    for incident in incidents:
        if text.isdigit() and int(text) == int(incident.id.removeprefix("INC-")):
            return incident
    known = ", ".join(i.id for i in incidents) or "none"
    raise ConfigError(f"no incident {wanted!r}; known: {known}", path="ID")
