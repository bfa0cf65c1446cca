"""Every path an operator gives on the command line: each kind of bad path (missing, a
directory where a file belongs or the other way round, a file that must not be overwritten, no
such directory, no permission) ends the command with exit 2, a message naming the path, and no
traceback, before anything runs.

`PATH_OPTIONS` lists every command-line option that takes a path, with what it must be; a
test walks the parser and fails when an option that takes a path is missing from the list.
Each case runs `ringfence` in a subprocess with a time limit, in its own session, and whatever it
started is stopped afterwards (found by the test's directory in command lines). The
no-permission cases use a directory of mode 000; when the tests run as root, that command runs
as root without capabilities (`setpriv`), so that file permissions apply to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringfence.cli import _build_parser
from ringfence.paths import PathArg

# (command words, option ("" for the positional path), kind, base arguments); {cluster},
# {scenario}, {journal} and {work} are filled in with valid paths, so that only the path under
# test is wrong.
CASE = tuple[tuple[str, ...], str, str, tuple[str, ...]]
_AGENT = ("--config", "{cluster}", "--host", "h1", "--watchdog", "process",
          "--state-dir", "{work}/state")
PATH_OPTIONS: list[CASE] = [
    (("simulate",), "", "input", ()),
    (("simulate",), "--report", "output_dir", ("{scenario}",)),
    (("fuzz",), "--out", "output_dir", ("--runs", "1", "--duration", "10s")),
    (("agent",), "--config", "input", _AGENT[2:]),
    (("agent",), "--state-dir", "output_dir", _AGENT[:6]),
    (("agent",), "--disk-file", "data_file", _AGENT),
    (("agent",), "--vm-dir", "output_dir", _AGENT),
    (("vm", "start"), "--config", "input", ("app",)),
    (("vm", "stop"), "--config", "input", ("app",)),
    (("vm", "reset"), "--config", "input", ("app",)),
    (("vm", "migrate"), "--config", "input", ("app", "--to", "h2")),
    (("vm", "force-start"), "--config", "input", ("app", "--host", "h1")),
    (("vm", "force-start"), "--state-dir", "output_dir",
     ("app", "--host", "h1", "--config", "{cluster}")),
    (("host", "maintenance"), "--config", "input", ("h1", "on")),
    (("status",), "--config", "input", ()),
    (("init",), "--out", "output_file", ("--name", "c", "--hosts", "a=10.0.0.1")),
    (("init",), "--key", "output_file", ("--name", "c", "--hosts", "a=10.0.0.1", "--out",
                                          "{work}/init.yaml")),
    (("fence", "test", "h1"), "--config", "input", ()),
    (("fence", "test", "h1"), "--state-dir", "output_dir", ("--config", "{cluster}")),
    (("check",), "", "input", ()),
    (("check",), "--state-dir", "input_any", ("{cluster}",)),
    (("lab", "run"), "", "input", ()),
    (("lab", "run-all"), "", "input_any", ()),
    (("lab", "run-all"), "--out", "output_dir", ()),
    *[((("incident", action) + ((("1",)) if action != "list" else ())), option, kind, base)
      for action in ("list", "show", "report")
      for option, kind, base in (("--journal", "input_any", ()),
                                 ("--scenario", "input", ()),
                                 ("--config", "input", ("--journal", "{journal}")))],
    (("incident", "report", "1"), "--out", "output_file", ("--scenario", "{scenario}")),
    (("why", "app"), "--journal", "input_any", ()),
    (("why", "app"), "--scenario", "input", ()),
    (("why", "app"), "--config", "input", ("--journal", "{journal}")),
    (("journal", "export"), "--journal", "input_any", ()),
    (("journal", "export"), "--config", "input", ("--store",)),
    (("status-page",), "--out", "output_dir", ("--scenario", "{scenario}")),
    (("status-page",), "--journal", "input_any", ("--out", "{work}/page")),
    (("status-page",), "--scenario", "input", ("--out", "{work}/page")),
    (("status-page",), "--config", "input", ("--out", "{work}/page", "--journal", "{journal}")),
]

BAD = {  # kind -> the kinds of bad path to try
    "input": ("missing", "no_parent", "is_dir", "no_permission"),
    "input_any": ("missing", "no_parent", "no_permission"),
    "output_file": ("exists", "is_dir", "no_parent", "no_permission"),
    "output_dir": ("is_file", "no_parent", "no_permission"),
    "data_file": ("is_dir", "no_parent", "no_permission"),
}

PATHY = {"config", "journal", "scenario", "out", "report", "state_dir", "disk_file", "file",
         "key"}

SCENARIO: dict[str, Any] = {
    "name": "paths", "duration": "60s",
    "cluster": {"networks": [{"name": "ring0", "role": "heartbeat"}],
                "hosts": [{"name": f"h{i}", "cpus": 4, "memory": "8GiB"} for i in (1, 2, 3)],
                "vms": [{"name": "app", "cpus": 1, "memory": "1GiB", "host": "h1"}]},
    "events": [{"at": "10s", "do": "power_off", "host": "h1"}],
}


def _path_actions(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
                  ) -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _path_actions(sub, (*words, name))
        elif action.dest in PATHY or isinstance(action.type, PathArg):
            yield words, action


def test_every_path_option_is_listed_and_checked() -> None:

    listed = {(words, option): kind for words, option, kind, _ in PATH_OPTIONS}
    found = {}
    for words, action in _path_actions(_build_parser()):
        option = action.option_strings[0] if action.option_strings else ""
        # incident show/report take an ID first: the table writes it as part of the command
        key = next((w for w, o in listed if w[:len(words)] == words and o == option), words)
        found[(key, option)] = action
    assert set(found) == set(listed), (
        f"path options not in PATH_OPTIONS: {sorted(set(found) - set(listed))}; "
        f"listed but not found: {sorted(set(listed) - set(found))}")
    for key, action in found.items():
        assert isinstance(action.type, PathArg), f"{key}: type {action.type!r} is not a PathArg"
        assert action.type.kind == listed[key], f"{key}: {action.type.kind} != {listed[key]}"


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Path]]:
    """Valid files and the bad paths; `private` (mode 000) is what no one may enter."""
    base = Path(tempfile.mkdtemp(prefix="ringfence-paths-", dir="/tmp"))
    base.chmod(0o755)
    try:
        scenario = base / "scenario.yaml"
        scenario.write_text(yaml.safe_dump(SCENARIO))
        key = base / "cluster.key"
        key.write_bytes(os.urandom(32))
        key.chmod(0o600)
        cluster = base / "cluster.yaml"
        cluster.write_text(yaml.safe_dump({
            "name": "paths", "key_file": str(key),
            "networks": [{"name": "ring0", "role": "heartbeat", "port": 45445}],
            "hosts": [{"name": f"h{i}", "cpus": 4, "memory": "8GiB", "hypervisor": "process",
                       "interfaces": {"ring0": {"address": f"127.0.4.{i}"}}} for i in (1, 2)],
            "store": {"kind": "sqlite", "path": str(base / "store.db")},
            "vms": [{"name": "app", "cpus": 1, "memory": "1GiB"}]}))
        journal = base / "journal"
        journal.mkdir()
        (journal / "journal-h1.jsonl").write_text(
            '{"t": 1.0, "mono": 1.0, "seq": 1, "by": "h1", "kind": "host_alive", '
            '"host": "h1", "vm": null, "text": "x"}\n')
        (base / "adir").mkdir()
        (base / "afile").write_text("something the user had\n")
        private = base / "private"
        private.mkdir(mode=0o700)
        (private / "file").write_text("x\n")
        private.chmod(0)
        work = base / "work"
        work.mkdir()
        yield {"base": base, "scenario": scenario, "cluster": cluster, "journal": journal,
               "work": work, "private": private}
    finally:
        with contextlib.suppress(OSError):
            (base / "private").chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)


def _bad_path(world: dict[str, Path], case: str, tag: int) -> str:
    """The bad path of kind *case*; *tag* keeps the paths of one test apart from another's
    (a command that wrongly created a path must not change what the next test sees)."""
    base = world["base"]
    return str({"missing": base / f"nope-{tag}.yaml",
                "no_parent": base / f"no-{tag}" / "such" / "dir" / "x",
                "is_dir": base / "adir", "is_file": base / "afile", "exists": base / "afile",
                "no_permission": world["private"] / "file"}[case])


def _stop_leftovers(marker: str) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)


CASES = [(words, option, kind, base, bad) for words, option, kind, base in PATH_OPTIONS
         for bad in BAD[kind]]


@pytest.mark.parametrize(("words", "option", "kind", "base", "bad"), CASES,
                         ids=[f"{' '.join(c[0])} {c[1] or 'PATH'} {c[4]}" for c in CASES])
def test_a_bad_path_is_exit_2_without_traceback(world: dict[str, Path], words: tuple[str, ...],
                                                option: str, kind: str,
                                                base: tuple[str, ...], bad: str) -> None:
    (world["base"] / "afile").write_text("something the user had\n")
    path = _bad_path(world, bad, CASES.index((words, option, kind, base, bad)))
    if bad == "no_permission" and kind in ("data_file", "output_file"):
        path = str(world["private"] / "new")
    elif bad == "no_permission" and kind == "output_dir":
        path = str(world["private"])  # exists, but no one may write into it
    filled = [a.format(**{k: str(v) for k, v in world.items()}) for a in base]
    argv = [*words, *filled, *([option] if option else []), path]
    command = [sys.executable, "-m", "ringfence.cli", *argv]
    if bad == "no_permission" and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root ignores file permissions, and setpriv (util-linux) is missing")
        command = [setpriv, "--bounding-set=-all", "--inh-caps=-all", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30,
                                check=False, cwd=world["work"], start_new_session=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ringfence {' '.join(argv)} ran on (did not refuse the path)")
    finally:
        _stop_leftovers(str(world["base"]))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr)
    assert path in result.stderr, result.stderr
    assert (world["base"] / "afile").read_text() == "something the user had\n"
