"""The scenario library through the public command line: every file passes, output is
deterministic, and failures and bad input give the contract's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SCENARIOS

LIBRARY = sorted(SCENARIOS.glob("*.yaml"))


def ringfence(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ringfence.cli", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )


@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
def test_library_scenario_passes(path: Path) -> None:
    from ringfence.sim.runner import simulate
    from ringfence.sim.scenario import load_scenario

    scenario = load_scenario(path)
    assert scenario.description, f"{path.name} must say which seed passage it reproduces"
    result = simulate(scenario)
    assert not result.violations, [v.text() for v in result.violations]
    failed = [o.detail for o in result.outcomes if not o.passed]
    assert not failed
    assert scenario.expect, "a library scenario must expect something"


def test_same_file_and_seed_give_byte_identical_json() -> None:
    path = str(SCENARIOS / "004-split-site-with-quorum-server.yaml")
    first = ringfence("simulate", path, "--json", "--seed", "3", env={"PYTHONHASHSEED": "1"})
    second = ringfence("simulate", path, "--json", "--seed", "3", env={"PYTHONHASHSEED": "2"})
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert document["seed"] == 3
    assert set(document) >= {"scenario", "seed", "passed", "violations", "expectations", "runs",
                             "vms", "hosts", "events"}


def test_false_expectation_exits_1_and_names_it(tmp_path: Path) -> None:
    data = yaml.safe_load((SCENARIOS / "003-host-power-loss-3-hosts.yaml").read_text())
    data["expect"] = [{"vm": "erp", "running_on": "host2", "at": "60s"}]
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(data))
    result = ringfence("simulate", str(path), "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["passed"] is False
    (outcome,) = document["expectations"]
    assert outcome["expect"] == {"vm": "erp", "running_on": "host2", "at": "60s"}
    assert outcome["passed"] is False
    assert "not on host2" in outcome["detail"]
    human = ringfence("simulate", str(path))
    assert human.returncode == 1
    assert "FAILED" in human.stdout and "running_on: host2" in human.stdout


def test_invalid_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    text = (SCENARIOS / "003-host-power-loss-3-hosts.yaml").read_text()
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("memory: 128GiB}", "memory: lots}", 1))
    result = ringfence("simulate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bad.yaml" in result.stderr and "cluster.hosts[0].memory" in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = ringfence("simulate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr
