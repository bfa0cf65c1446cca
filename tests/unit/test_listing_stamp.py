"""`listing.Stamp` (a directory is read again only when it may have changed), the process
hypervisor's listing that uses it, and the process watchdog's pet gap: the idle agent's cost
(issue 17) without missing a change."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import ringfence.hypervisor.process as process
import ringfence.hypervisor.process_vm as process_vm
from ringfence.fence.watchdog import PET_GAP, ProcessWatchdog
from ringfence.hypervisor.process import ProcessHypervisor
from ringfence.hypervisor.process_vm import proc_starttime
from ringfence.listing import RACY_NS, Stamp


def age(directory: Path, seconds: float = 5.0) -> None:
    """Make the directory's mtime old enough to prove that nothing changed since."""
    old = time.time_ns() - int(seconds * 1e9)
    os.utime(directory, ns=(old, old))


def test_a_stamp_vouches_only_after_a_reading(tmp_path: Path) -> None:
    stamp = Stamp(tmp_path)
    assert not stamp.unchanged()
    age(tmp_path)
    stamp.reading()
    assert stamp.unchanged() and stamp.unchanged()


@pytest.mark.parametrize("change", ["create", "remove", "replace", "rename"])
def test_every_change_of_an_entry_ends_the_stamp(tmp_path: Path, change: str) -> None:
    (tmp_path / "a.json").write_text("{}")
    age(tmp_path)
    stamp = Stamp(tmp_path)
    stamp.reading()
    assert stamp.unchanged()
    if change == "create":
        (tmp_path / "b.json").write_text("{}")
    elif change == "remove":
        (tmp_path / "a.json").unlink()
    elif change == "replace":  # an atomic rewrite, as every state file is written
        (tmp_path / ".a.tmp").write_text("{}")
        os.replace(tmp_path / ".a.tmp", tmp_path / "a.json")
    else:
        os.rename(tmp_path / "a.json", tmp_path / "c.json")
    assert not stamp.unchanged()


def test_a_directory_changed_just_before_the_reading_proves_nothing(tmp_path: Path) -> None:
    # Its mtime is younger than a jiffy's margin: a change in the same jiffy would not move
    # it, so the next look reads again.
    now = time.time_ns() - RACY_NS // 4
    os.utime(tmp_path, ns=(now, now))
    stamp = Stamp(tmp_path)
    stamp.reading()
    assert not stamp.unchanged()


def test_a_missing_directory_is_never_unchanged(tmp_path: Path) -> None:
    stamp = Stamp(tmp_path / "missing")
    stamp.reading()
    assert not stamp.unchanged()
    age(tmp_path)
    stamp = Stamp(tmp_path)
    stamp.reading()
    tmp_path.rmdir()
    assert not stamp.unchanged()


def _state(directory: Path, vm: str, token: int) -> None:
    data = {"vm": vm, "host": "h1", "pid": os.getpid(), "starttime": proc_starttime(os.getpid()),
            "token": token, "port_file": ""}
    tmp = directory / f".{vm}.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, directory / f"{vm}.json")


def test_the_hypervisor_reads_its_state_again_only_when_it_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []
    real = process.read_records
    monkeypatch.setattr(process, "read_records", lambda d: reads.append(d) or real(d))
    # This test process stands in for the VM: the command line check is the one thing
    # faked, so that a live process with the right start time counts.
    monkeypatch.setattr(process, "is_ours", lambda record: record.pid == os.getpid())
    state = tmp_path / "h1"
    hypervisor = ProcessHypervisor("h1", state, tmp_path / "disk")
    _state(state, "db", 4)
    age(state)
    assert hypervisor.list_running() == {"db": 4}
    assert hypervisor.list_running() == {"db": 4}
    assert len(reads) == 1
    _state(state, "db", 5)  # re-tokened: the file is replaced whole
    assert hypervisor.list_running() == {"db": 5}
    assert len(reads) == 2


def test_a_vm_that_died_is_not_listed_from_an_unchanged_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "h1"
    hypervisor = ProcessHypervisor("h1", state, tmp_path / "disk")
    monkeypatch.setattr(process, "is_ours", lambda record: record.pid == os.getpid())
    _state(state, "db", 4)
    age(state)
    assert hypervisor.list_running() == {"db": 4}
    # The process is found again by pid and start time alone; a start time that differs is
    # another process under a reused pid: not the VM.
    monkeypatch.setattr(process_vm, "starttime_in", lambda stat: -1)
    assert hypervisor.list_running() == {}
    assert not (state / "db.json").exists()


class _Pipe:
    def __init__(self) -> None:
        self.read_end, write_end = os.pipe()
        self.stdin = os.fdopen(write_end, "wb")

    def poll(self) -> None:
        return None


def test_pets_closer_than_the_gap_are_one(tmp_path: Path) -> None:
    dog = ProcessWatchdog(tmp_path)
    pipe = _Pipe()
    dog.process = pipe  # type: ignore[assignment]
    dog.pet()
    dog.pet()  # at once: the deadline stays where the first pet put it
    os.set_blocking(pipe.read_end, False)
    assert os.read(pipe.read_end, 16) == b"."
    time.sleep(PET_GAP * 1.5)
    dog.pet()
    assert os.read(pipe.read_end, 16) == b"."
    pipe.stdin.close()
    os.close(pipe.read_end)
