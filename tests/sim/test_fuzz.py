"""The fuzzer and the property that matters: random clusters and fault schedules never run a
VM on two hosts at once, and when a safety rule is broken on purpose, the checker catches it."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run, runs_of, scenario
from ringfence.core import leases
from ringfence.sim.fuzz import FuzzOptions, fuzz, make_scenario
from ringfence.sim.runner import simulate
from ringfence.sim.scenario import load_scenario, parse_scenario


def test_a_fuzz_batch_finds_no_violation(tmp_path: Path) -> None:
    report = fuzz(FuzzOptions(runs=12, seed=11, duration=120.0, out=tmp_path))
    assert report.runs == 12
    assert not report.violations
    assert len(report.faults) >= 10  # the batch really drew many kinds of fault


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**31 - 1),
       hosts=st.one_of(st.none(), st.integers(min_value=2, max_value=6)))
def test_property_no_schedule_runs_a_vm_twice(seed: int, hosts: int | None) -> None:
    data = make_scenario(random.Random(seed), FuzzOptions(hosts=hosts, duration=90.0), 0)
    result = simulate(parse_scenario(data))
    assert not result.violations, [v.text() for v in result.violations]


def test_fuzz_is_deterministic() -> None:
    options = FuzzOptions(runs=1, seed=5, duration=60.0)
    assert make_scenario(random.Random(9), options, 0) == make_scenario(random.Random(9),
                                                                         options, 0)


def test_a_broken_self_fence_rule_is_found_shrunk_and_reproduced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Break the rule: an agent cut off from the store believes its lease fresh for ever, so it
    # neither stops its VMs nor stops petting its watchdog.
    monkeypatch.setattr(leases, "lease_is_fresh", lambda age, timing: True)
    report = fuzz(FuzzOptions(runs=40, seed=1, hosts=3, duration=90.0, out=tmp_path))
    assert report.violations, "the checker must catch a broken safety rule"
    _, text, path = report.violations[0]
    # A stale pet is caught first, or the split brain it leads to.
    assert ("split brain" in text or "stale pet" in text) and path is not None and path.exists()
    written = yaml.safe_load(path.read_text())
    assert len(written["events"]) <= 4, "shrinking keeps only what the violation needs"
    # The file reproduces the violation through the public command while the rule is broken...
    assert simulate(load_scenario(path)).violations
    # ...and is safe with the real rule (run in a fresh process: no monkeypatch there).
    safe = subprocess.run([sys.executable, "-m", "ringfence.cli", "simulate", str(path),
                           "--json"], capture_output=True, text=True, check=False)
    assert '"violations": []' in safe.stdout


def test_the_wait_after_lease_expiry_is_load_bearing(monkeypatch: pytest.MonkeyPatch) -> None:
    # host1 is cut off from the store, then hangs just before its self-fence deadline, its
    # last watchdog pet late; it resumes after its lease expired but before its watchdog
    # fired. The wait of watchdog_timeout + clock_margin after the expiry is what keeps
    # host2 from starting the VM before host1 is reset.
    events = [{"at": "20.5s", "do": "partition", "groups": [["host1"], ["host2", "host3"]]},
              {"at": "24.9s", "do": "hang", "host": "host1"},
              {"at": "28s", "do": "resume", "host": "host1"}]
    safe = run(scenario(events=events))
    assert not safe.violations
    assert min(s for h, s, _ in runs_of(safe, "app") if h != "host1") > 28.0
    monkeypatch.setattr(leases, "proven_by_expiry", lambda waited, timing: True)
    broken = run(scenario(events=events))
    assert [v.text() for v in broken.violations] == [
        "split brain: app ran on host2 and host1 at 28.000s"]


def test_a_migration_that_leaves_a_copy_behind_is_still_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The checker treats a live migration's switchover instant as one guest. Break the
    # hypervisor so that the source keeps running after the handover: a split brain.
    from ringfence.sim.world import World

    real = World._switch_over

    def leaky(self: World, source: str, vm: str, target: str, token: int) -> None:
        real(self, source, vm, target, token)
        self.hosts[source].domains[vm] = token  # the source's copy runs on
        self._open_run(vm, source)

    path = Path(__file__).resolve().parents[2] / "scenarios" / "maintenance-drain-and-return.yaml"
    assert not simulate(load_scenario(path)).violations
    monkeypatch.setattr(World, "_switch_over", leaky)
    assert simulate(load_scenario(path)).violations
