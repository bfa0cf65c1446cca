"""Readable output of a simulation: faults, what happened to each VM, the verdict table, and
(with `--timeline`) every journaled event. Rich renders colours on a terminal and plain text
elsewhere."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ringfence.sim.runner import SimulationResult

# Events worth showing in the short timeline (the rest is heartbeat bookkeeping).
KEY_EVENTS = frozenset({
    "host_suspect", "host_fenced", "self_fence", "fence_started", "fence_agent_ok",
    "fence_agent_failed", "lease_expired", "vm_started", "vm_stopped", "vm_recovered",
    "vm_pending", "waiting_for_quorum", "quorum_lost", "manager_elected", "watchdog_reset",
    "jeopardy", "host_shutdown", "failsafe_entered", "failsafe_left", "force_start",
    "force_start_refused", "preexisting_split_brain",
})


def render_result(result: SimulationResult, *, timeline: bool = False,
                  console: Console | None = None) -> None:
    out = console or Console(highlight=False)
    world, scenario = result.world, result.scenario
    out.print(f"[bold]{escape(scenario.name)}[/bold] (seed {result.seed}, "
              f"{scenario.duration:g}s simulated)")
    if scenario.description:
        out.print(escape(scenario.description.strip()), style="dim")

    events = Table(title="Timeline" if timeline else "Timeline (key events; --timeline: all)",
                   show_lines=False, expand=False)
    events.add_column("t", justify="right")
    events.add_column("what")
    events.add_column("host")
    events.add_column("detail")
    rows: list[tuple[float, int, str, str, str]] = []
    for fault in world.faults:
        detail = ", ".join(f"{k}={v}" for k, v in fault.detail.items() if k != "host")
        rows.append((fault.t, 0, f"[bold magenta]FAULT {fault.kind}[/]",
                     str(fault.detail.get("host", "")), escape(detail)))
    for entry in world.entries:
        if timeline or entry.kind in KEY_EVENTS:
            rows.append((entry.t, 1, entry.kind, entry.host or "", escape(entry.text)))
    for t, _, what, host, detail in sorted(rows, key=lambda r: (r[0], r[1])):
        events.add_row(f"{t:.1f}", what, host, detail)
    out.print(events)

    runs = Table(title="Where each VM ran (ground truth)")
    for column in ("vm", "host", "from", "to"):
        runs.add_column(column)
    for run in sorted(world.runs, key=lambda r: (r.vm, r.start)):
        runs.add_row(run.vm, run.host, f"{run.start:.1f}", f"{(run.end or 0):.1f}")
    out.print(runs)

    verdict = Table(title="Verdict")
    verdict.add_column("check")
    verdict.add_column("result")
    verdict.add_column("detail")
    if result.violations:
        for v in result.violations:
            verdict.add_row("safety", "[bold red]VIOLATION[/]", v.text())
    else:
        verdict.add_row("safety: never two hosts running one VM", "[green]held[/]", "")
    for outcome in result.outcomes:
        written = ", ".join(f"{k}: {v}" for k, v in outcome.expectation.as_written().items())
        verdict.add_row(escape(written),
                        "[green]passed[/]" if outcome.passed else "[red]FAILED[/]",
                        escape(outcome.detail))
    out.print(verdict)
    out.print("[bold green]PASSED[/]" if result.passed else "[bold red]FAILED[/]")
