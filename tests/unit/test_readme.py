"""README's promises, checked: exactly two set-up commands for a newcomer on a fresh Debian 12
machine (the demo, the whole test suite), which work as root (no sudo installed) and as a user
with sudo; the test command is the one CI runs; the example cluster file passes `ringfence
check` as copied.

`scripts/demo` is run against stand-ins (a fake `id`, `sudo`, `apt-get` and `python3` on a
PATH that holds nothing else), which record what the script asked for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST_COMMAND = "scripts/dev-setup && .venv/bin/python -m pytest"


def _section(heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match is not None, f"README has no '## {heading}' section"
    return match.group(1)


def _blocks(text: str, language: str) -> list[str]:
    return [b.strip() for b in re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)]


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_same_tests() -> None:
    commands = _blocks(_section("Quick start"), "sh")
    assert commands == ["scripts/demo", TEST_COMMAND], commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci, ".ci/run must run README's test command exactly"


# --------------------------------------------------------------------------- scripts/demo

_FAKES = {
    "id": '#!/bin/bash\n[ "$1" = -u ] && { echo "$FAKE_UID"; exit 0; }\nexit 1\n',
    "apt-get": '#!/bin/bash\necho "apt-get $*" >> "$LOG"\n',
    "sudo": '#!/bin/bash\necho "sudo $*" >> "$LOG"\nexec "$@"\n',
    # python3: venv and ensurepip work only when $FAKE_VENV is yes; `-m venv .venv` makes a
    # venv whose pip, asked to install, provides a ringfence that records its arguments
    "python3": """#!/bin/bash
echo "python3 $*" >> "$LOG"
case "$*" in
  "-m venv --help"|"-c import ensurepip") [ "$FAKE_VENV" = yes ] ;;
  "-m venv .venv") mkdir -p .venv/bin && cp "$FAKES/pip" "$FAKES/python" .venv/bin/ ;;
  *) exit 3 ;;
esac
""",
    "pip": '#!/bin/bash\necho "pip $*" >> "$LOG"\n'
           '[ "$1" = install ] && cp "$FAKES/ringfence" .venv/bin/\nexit 0\n',
    "python": '#!/bin/bash\necho "venv-python $*" >> "$LOG"\n',
    "ringfence": '#!/bin/bash\necho "ringfence $*" >> "$LOG"\n',
}


def _run_demo_script(tmp_path: Path, *, uid: int, sudo: bool, venv: bool
                     ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "demo", repo / "scripts" / "demo")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    bin_dir, fakes = tmp_path / "bin", tmp_path / "fakes"
    bin_dir.mkdir()
    fakes.mkdir()
    for tool in ("bash", "env", "dirname", "cat", "mkdir", "chmod", "touch", "cp", "rm"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    for name, text in _FAKES.items():
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
        if name in ("id", "apt-get", "python3") or (name == "sudo" and sudo):
            (bin_dir / name).symlink_to(fakes / name)
    log = tmp_path / "log"
    log.touch()
    result = subprocess.run(
        ["bash", str(repo / "scripts" / "demo"), "--hosts", "3"],
        env={"PATH": str(bin_dir), "LOG": str(log), "FAKE_UID": str(uid), "FAKES": str(fakes),
             "FAKE_VENV": "yes" if venv else "no", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    return result, log.read_text().splitlines()


def test_the_demo_command_works_as_root_without_sudo(tmp_path: Path) -> None:
    result, log = _run_demo_script(tmp_path, uid=0, sudo=False, venv=False)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("apt-get install") and "python3-venv" in line for line in log)
    assert not any(line.startswith("sudo") for line in log), log
    assert log[-1] == "ringfence demo --hosts 3", log


def test_the_demo_command_works_as_a_user_with_sudo(tmp_path: Path) -> None:
    result, log = _run_demo_script(tmp_path, uid=1000, sudo=True, venv=False)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("sudo ") and "apt-get install" in line for line in log), log
    assert log[-1] == "ringfence demo --hosts 3", log


def test_the_demo_command_installs_nothing_when_python_has_venv(tmp_path: Path) -> None:
    result, log = _run_demo_script(tmp_path, uid=1000, sudo=False, venv=True)
    assert result.returncode == 0, result.stderr
    assert not any("apt-get" in line for line in log), log
    assert log[-1] == "ringfence demo --hosts 3", log


def test_a_user_without_sudo_is_told_what_to_do(tmp_path: Path) -> None:
    result, log = _run_demo_script(tmp_path, uid=1000, sudo=False, venv=False)
    assert result.returncode != 0
    assert "root" in result.stderr and "sudo" in result.stderr, result.stderr
    assert not any("ringfence" in line for line in log)


# ------------------------------------------------------------------- the example cluster file


def test_the_example_cluster_file_passes_check(tmp_path: Path) -> None:
    blocks = _blocks(_section("A real three-host cluster"), "yaml")
    assert len(blocks) == 1, "README's cluster example is one yaml block"
    path = tmp_path / "atl.yaml"
    path.write_text(blocks[0] + "\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "ringfence.cli", "check", str(path)],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "COLUMNS": "120"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Result: OK" in result.stdout, result.stdout
    section = " ".join(_section("A real three-host cluster").split())
    for line in result.stdout.splitlines():
        if "WARNING" in line:  # README must name every warning a real site has to act on
            words = " ".join(line.split("WARNING", 1)[1].split(":", 1)[1].split()[:5])
            assert words in section, f"README does not explain the warning {line.strip()!r}"


@pytest.mark.parametrize("needle", ["ringfence check atl.yaml", "ringfence agent --config"])
def test_the_example_says_how_to_use_it(needle: str) -> None:
    assert needle in _section("A real three-host cluster")
