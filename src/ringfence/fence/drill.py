"""`ringfence fence test HOST`: a fence drill, run by an operator before trusting fencing.

A fence agent that was never tried is the classic surprise of an incident: wrong address, an
expired BMC password, a management network that does not route from the other hosts. The drill
runs the host's configured agent (`fencing.HOST` in the cluster file) the way ringfence will:

1. ``status`` (always): the BMC answers and the credentials work; the time it took;
2. with ``--off``: a real fence: ``off``, confirmed by ``status`` reporting off (the same code
   path as an incident, `FenceAgentRunner.fence`), then ``on`` and ``status`` until it reports
   on again; the time of each step. The host is really powered off: run it only on a host
   without VMs (in maintenance), never on the host you are on (the command refuses that).

Each drill is recorded in the state directory (`fence-drills/HOST.json`: when, which steps,
whether they passed), so that `ringfence check --state-dir` can remind of hosts whose fencing
was never drilled. Exit codes: 0 every step passed, 1 a step failed, 2 bad input.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ringfence.config import ClusterConfig
from ringfence.errors import ConfigError
from ringfence.fence.runner import FenceAgentRunner

__all__ = ["DRILLS_DIR", "DrillRecord", "DrillStep", "drilled_hosts", "last_drills", "run_drill"]

DRILLS_DIR = "fence-drills"
ON_WAIT = 120.0  # seconds to wait for the host to report "on" again after `on`


@dataclass(frozen=True)
class DrillStep:
    action: str
    ok: bool
    seconds: float
    detail: str


def _runner(config: ClusterConfig, host: str, timeout: float) -> FenceAgentRunner:
    names = [h.name for h in config.hosts]
    if host not in names:
        raise ConfigError(f"unknown host {host!r}; the cluster's hosts: {', '.join(names)}",
                          path="HOST")
    spec = config.fencing.get(host)
    if spec is None:
        raise ConfigError(f"{host} has no fence agent: add fencing.{host} (agent and params) "
                          f"to the cluster file", path=f"fencing.{host}")
    if spec.agent == "power":
        raise ConfigError(f"fencing.{host}.agent is 'power', the simulator's power controller:"
                          f" a real cluster names a ClusterLabs agent (fence_ipmilan, "
                          f"fence_redfish...)", path=f"fencing.{host}.agent")
    return FenceAgentRunner(host, spec.agent, spec.params, timeout=timeout, retries=1,
                            poll_interval=1.0)


def run_drill(config: ClusterConfig, host: str, *, off: bool, timeout: float,
              state_dir: Path | None, say: object = None) -> list[DrillStep]:
    """Run the drill (module docstring); records it in `state_dir` when given."""
    if off and host in (socket.gethostname(), socket.getfqdn()):
        raise ConfigError(f"refusing to power off {host}: it is the host this command runs on",
                          path="--off")
    runner = _runner(config, host, timeout)
    steps: list[DrillStep] = []
    started = time.monotonic()
    state, detail = runner.status(timeout)
    steps.append(DrillStep("status", state in ("on", "off"), time.monotonic() - started,
                           f"reports {state}" + (f": {detail}" if detail else "")))
    if off and steps[-1].ok:
        started = time.monotonic()
        result = runner.fence(host, "off").wait(timeout + 30.0)
        steps.append(DrillStep("off", bool(result and result.ok), time.monotonic() - started,
                               result.detail if result else "no answer"))
        started = time.monotonic()
        on = runner.power_on()
        steps.append(DrillStep("on", on.ok, time.monotonic() - started, on.detail))
        if on.ok:
            started = time.monotonic()
            state = "error"
            while time.monotonic() - started < ON_WAIT:
                state, detail = runner.status(timeout)
                if state == "on":
                    break
                time.sleep(1.0)
            steps.append(DrillStep("status", state == "on", time.monotonic() - started,
                                   f"reports {state}" + (f": {detail}" if detail else "")))
    if state_dir is not None:
        _record(state_dir, host, off, steps)
    return steps


def _record(state_dir: Path, host: str, off: bool, steps: list[DrillStep]) -> None:
    directory = state_dir / DRILLS_DIR
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{host}.json.tmp"
        tmp.write_text(json.dumps({"host": host, "at": time.time(), "off": off,
                                   "ok": all(s.ok for s in steps),
                                   "steps": [asdict(s) for s in steps]}, indent=2) + "\n")
        tmp.replace(directory / f"{host}.json")
    except OSError as exc:
        raise ConfigError(f"can not record the drill: {exc.strerror or exc}",
                          file=str(directory)) from None


@dataclass(frozen=True)
class DrillRecord:
    """The last recorded drill of a host: when (seconds since the epoch), whether it was a
    real off/on (``--off``) or ``status`` only, and whether every step passed."""

    host: str
    at: float
    off: bool
    ok: bool


def last_drills(state_dir: Path) -> dict[str, DrillRecord]:
    """Host -> its last recorded drill in `state_dir` (hosts never drilled are absent).

    Never raises: a record that can not be read or is not a drill record (a stray file, a
    half-written one from a crash) counts as no record, so the host is reported as never
    drilled rather than hiding behind a broken file."""
    found: dict[str, DrillRecord] = {}
    directory = state_dir / DRILLS_DIR
    try:
        paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
    except OSError:
        return found
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(record, dict) and isinstance(record.get("host"), str)
                and isinstance(record.get("at"), int | float)):
            continue
        found[record["host"]] = DrillRecord(record["host"], float(record["at"]),
                                            bool(record.get("off")), bool(record.get("ok")))
    return found


def drilled_hosts(state_dir: Path) -> dict[str, bool]:
    """Host -> whether its last recorded drill passed (hosts never drilled are absent)."""
    return {host: record.ok for host, record in last_drills(state_dir).items()}
