"""The ``ringfence check`` command: :func:`load_any` reads a cluster file or the
``cluster:`` of a scenario file, :func:`read_drills` the fence drill records of a state
directory, :func:`run_check` analyses them, prints the report and returns the exit code.

:class:`ringfence.errors.ConfigError` propagates for a file that can not be read, parsed or
validated (the command line turns it into exit code 2).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ringfence.check.analysis import analyse
from ringfence.check.drills import DrillRecords
from ringfence.check.render import render_text, to_json
from ringfence.config import ClusterConfig, parse_cluster, read_yaml


def load_any(path: str | Path) -> ClusterConfig:
    """The cluster of *path*: a scenario file (top level has ``cluster:``) or a cluster file.

    Raises :class:`ringfence.errors.ConfigError` naming the file, line and field."""
    data, lines = read_yaml(path)
    if isinstance(data, dict) and "cluster" in data:
        from ringfence.sim.scenario import parse_scenario

        return parse_scenario(data, file=str(path), lines=lines).cluster
    return parse_cluster(data, file=str(path), lines=lines)


def read_drills(state_dir: str | Path) -> DrillRecords:
    """The fence drill records of *state_dir* (``fence-drills/`` there), judged against now;
    ``records`` is None when *state_dir* is not a directory. Never raises."""
    from ringfence.fence.drill import last_drills

    directory = Path(state_dir)
    records = last_drills(directory) if directory.is_dir() else None
    return DrillRecords(str(directory), records, time.time())


def run_check(path: str, *, as_json: bool, state_dir: str | Path | None = None) -> int:
    """``ringfence check PATH [--json] [--state-dir DIR]``: print the report, return the exit
    code (0 or 1). *state_dir*: where `ringfence fence test` recorded its drills (the
    reminders of :mod:`ringfence.check.drills`); None leaves drills out.

    :class:`ringfence.errors.ConfigError` propagates for a file that is not valid."""
    import json

    config = load_any(path)
    report = analyse(config, read_drills(state_dir) if state_dir is not None else None)
    if as_json:
        sys.stdout.write(json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return report.exit_code
