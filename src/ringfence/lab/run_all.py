"""`ringfence lab run-all [DIR]`: every scenario file of a directory, simulated and, where the
lab can do it, replayed for real, in one table.

For each file (sorted by name): the simulator's verdict and recovery time, then the lab's
verdict and recovery time, or why the lab refuses it. A scenario's *recovery time* is the
longest downtime of any of its VMs (``vms.<vm>.downtime_s`` of the JSON document): the time a
VM was down in all after it first started, judged in each world from its own ground truth.
With ``--out DIR`` every document is kept (``DIR/<scenario>.sim.json``,
``DIR/<scenario>.lab.json``) with the table (``DIR/table.md``, ``DIR/table.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ringfence.errors import ConfigError
from ringfence.lab.faults import refusals
from ringfence.lab.judge import lab_json
from ringfence.lab.netns import LabError
from ringfence.lab.runner import LabOptions, LabRefused, LabRun
from ringfence.sim.runner import simulate, to_json
from ringfence.sim.scenario import load_scenario


@dataclass
class Row:
    file: str
    scenario: str
    simulated: str  # passed | FAILED | invalid
    sim_recovery_s: float | None
    lab: str  # passed | FAILED | refused | error
    lab_recovery_s: float | None
    wall_s: float
    note: str = ""


def recovery(document: dict[str, Any]) -> float | None:
    downtimes = [vm["downtime_s"] for vm in document.get("vms", {}).values()]
    return max(downtimes) if downtimes else None


def _failed_checks(document: dict[str, Any]) -> str:
    failed = [", ".join(f"{k}: {v}" for k, v in item["expect"].items())
              for item in document["expectations"] if not item["passed"]]
    failed += [v["text"] for v in document["violations"]]
    failed += [f"lab: {e}" for e in document["lab"]["errors"]]
    return "; ".join(failed)


def run_all(directory: Path, options: LabOptions, *, out: Path | None = None,
            say: Callable[[str], None] = print) -> list[Row]:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{directory}: no scenario files (*.yaml) here")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for path in files:
        started = time.monotonic()
        try:
            scenario = load_scenario(path)
        except ConfigError as exc:
            rows.append(Row(path.name, path.stem, "invalid", None, "refused", None, 0.0,
                            str(exc)))
            continue
        simulated = to_json(simulate(scenario))
        sim = "passed" if simulated["passed"] else "FAILED"
        if out is not None:
            (out / f"{path.stem}.sim.json").write_text(json.dumps(simulated, indent=2) + "\n")
        reasons = refusals(scenario)
        if reasons:
            rows.append(Row(path.name, scenario.name, sim, recovery(simulated), "refused",
                            None, 0.0, "; ".join(reasons)))
            say(f"{path.name}: refused: {reasons[0]}")
            continue
        say(f"{path.name}: replaying {scenario.duration:g}s for real")
        try:
            document = lab_json(LabRun(scenario, options).run())
        except LabRefused as exc:
            rows.append(Row(path.name, scenario.name, sim, recovery(simulated), "refused",
                            None, 0.0, "; ".join(exc.reasons)))
            continue
        except (LabError, ConfigError) as exc:
            # One scenario the lab could not build (a cluster file its agents refuse, say)
            # is that row's error, not the end of the whole run.
            rows.append(Row(path.name, scenario.name, sim, recovery(simulated), "error", None,
                            time.monotonic() - started, str(exc)))
            say(f"{path.name}: lab error: {exc}")
            continue
        if out is not None:
            (out / f"{path.stem}.lab.json").write_text(json.dumps(document, indent=2) + "\n")
        lab = "passed" if document["passed"] else "FAILED"
        rows.append(Row(path.name, scenario.name, sim, recovery(simulated), lab,
                        recovery(document), round(time.monotonic() - started, 1),
                        "" if document["passed"] else _failed_checks(document)))
        say(f"{path.name}: lab {lab}")
    if out is not None:
        (out / "table.md").write_text(markdown(rows), encoding="utf-8")
        (out / "table.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return rows


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def markdown(rows: list[Row]) -> str:
    lines = ["| scenario | simulated | recovery (sim) | lab | recovery (lab) | note |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        note = row.note.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row.file} | {row.simulated} | {_seconds(row.sim_recovery_s)} | "
                     f"{row.lab} | {_seconds(row.lab_recovery_s)} | {note} |")
    return "\n".join(lines) + "\n"
