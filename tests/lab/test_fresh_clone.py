"""README's two set-up commands, run as a newcomer runs them: in a fresh `git clone` of this
repository (the committed HEAD: no .venv, no build products, nothing of the working tree).

1. `scripts/demo` runs for real, end to end: it builds the clone's .venv itself and runs the
   demo (three agents as processes, the embedded SQLite store: etcd is not involved). Its
   arguments are passed on to `ringfence demo` (README says so), and the test passes
   `--duration 40s --fault-at 10s --port 0 --no-browser --json`: a time limit instead of
   Ctrl-C, a free port instead of 8080 (other demos or tests may hold it), and the JSON summary
   to judge: the power cut's VMs moved, no split brain, a report written, no process left.
2. The test command (`scripts/dev-setup && .venv/bin/python -m pytest`) would run this whole
   suite again from inside it, this test included: it would recurse. So the test checks that
   README's line is exactly the line `.ci/run` runs (CI is where the whole suite runs from a
   clean clone), then runs its set-up part, `scripts/dev-setup`, for real in the same clone
   (idempotent: it installs with apt only what is missing, and stops no service), and then the
   suite's runner on a small selection (README's own tests) with the clone's .venv.

Both need root or sudo (apt-get) and the package index, and take minutes: marker `lab`, root
only. Everything the demo started is looked for afterwards by the clone's directory in command
lines (only processes of this test carry it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TEST_COMMAND = "scripts/dev-setup && .venv/bin/python -m pytest"


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quick start.*?$(.*?)(?=^## )", readme, re.M | re.S)
    assert section is not None
    return [b.strip() for b in re.findall(r"^```sh\n(.*?)^```", section.group(1), re.M | re.S)]


def _left_behind(clone: Path) -> list[str]:
    """Processes whose command line names the clone (the demo's agents, VMs, watchdogs)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(clone) in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("README's commands install packages: root (or sudo) needed")
    target = tmp_path_factory.mktemp("fresh") / "ringfence"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True, timeout=120)
    assert not (target / ".venv").exists()
    return target


def _env(clone: Path) -> dict[str, str]:
    # A newcomer's environment: no venv activated, this test's variables not inherited.
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(clone.parent), "TMPDIR": str(clone.parent), "LANG": "C.UTF-8"}


def test_readme_first_command_runs_the_demo_in_a_fresh_clone(clone: Path) -> None:
    assert _quick_start_commands()[0] == "scripts/demo"
    result = subprocess.run(
        ["scripts/demo", "--duration", "40s", "--fault-at", "10s", "--port", "0",
         "--no-browser", "--json"],
        cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["split_brain"] is False
    assert summary["vms"], summary
    moved = [vm for vm, run in summary["vms"].items() if run["host_after"] != run["host_before"]]
    assert moved, f"the power cut moved no VM: {summary['vms']}"
    assert summary["report"] and Path(summary["report"]).exists(), summary["report"]
    assert (clone / ".venv" / "bin" / "ringfence").exists()
    assert _left_behind(clone) == []


def test_readme_second_command_is_ci_and_its_setup_works_in_the_clone(clone: Path) -> None:
    assert _quick_start_commands()[1] == TEST_COMMAND
    assert TEST_COMMAND in (clone / ".ci" / "run").read_text().splitlines()
    setup = subprocess.run(["scripts/dev-setup"], cwd=clone, env=_env(clone),
                           capture_output=True, text=True, timeout=1500, check=False)
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-4000:]
    tests = subprocess.run([".venv/bin/python", "-m", "pytest", "-o", "addopts=", "-q", "-p",
                            "no:cacheprovider", "tests/unit/test_readme.py"],
                           cwd=clone, env=_env(clone), capture_output=True, text=True,
                           timeout=600, check=False)
    assert tests.returncode == 0, tests.stdout[-4000:]
    assert re.search(r"^\d+ passed", tests.stdout, re.M), tests.stdout
    assert _left_behind(clone) == []
