"""The process hypervisor's state files as `read_records` lists them (plain `os.scandir` since
issue 17, instead of pathlib's glob): the same files, in the same order, and nothing, not an
error, where glob found nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ringfence.hypervisor.process import is_alive, is_ours, read_records
from ringfence.hypervisor.process_vm import proc_starttime


def _record(directory: Path, vm: str, **fields: object) -> None:
    data = {"vm": vm, "host": "h1", "pid": os.getpid(), "starttime": None, "token": 1,
            "port_file": "", **fields}
    (directory / f"{vm}.json").write_text(json.dumps(data))


def test_state_files_are_read_sorted_and_others_left_alone(tmp_path: Path) -> None:
    for vm in ("vm2", "vm10", "vm1"):
        _record(tmp_path, vm)
    (tmp_path / ".host").write_text("h1")
    (tmp_path / ".vm1.json.123.tmp").write_text("{")  # an atomic write under way
    (tmp_path / "vm1.log").write_text("not a record")
    records = read_records(tmp_path)
    assert [r.vm for r in records] == sorted(["vm2", "vm10", "vm1"])
    assert records[0].path == tmp_path / "vm1.json"


def test_no_directory_is_no_records(tmp_path: Path) -> None:
    assert read_records(tmp_path / "missing") == []
    (tmp_path / "file").write_text("")
    assert read_records(tmp_path / "file") == []


def test_a_broken_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "vm1.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"vm1\.json: not a VM state file"):
        read_records(tmp_path)


def test_a_live_process_that_is_no_vm_is_not_ours(tmp_path: Path) -> None:
    _record(tmp_path, "vm1", starttime=proc_starttime(os.getpid()))
    (record,) = read_records(tmp_path)
    assert is_alive(os.getpid())
    assert not is_ours(record)  # alive and the same process, but not a process VM
    assert not is_alive(2**22 + 1)  # above Linux's pid_max: no such process
