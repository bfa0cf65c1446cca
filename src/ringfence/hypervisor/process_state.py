"""The process hypervisor's state on disk: one ``VM.json`` per running process VM (written by
the VM itself, rewritten whole by the hypervisor on a re-token), the ``.host`` mark that says
whose VMs a state directory holds, and the checks that tell a live VM process from a dead one
or from another process under a reused pid. Read by `ProcessHypervisor` and by the process
watchdog (which kills what these files name); see `ringfence.hypervisor.process` for the
layout."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringfence.hypervisor.process_vm import alive_in, proc_stat, runs, starttime_in
from ringfence.listing import names_in

__all__ = [
    "HOST_MARK",
    "VM_MODULE",
    "VMRecord",
    "alive_in",
    "claim",
    "claimant",
    "is_alive",
    "is_ours",
    "parse_record",
    "read_records",
    "write_json_atomically",
]

VM_MODULE = "ringfence.hypervisor.process_vm"


@dataclass(frozen=True, slots=True)
class VMRecord:
    """One VM's state file."""

    vm: str
    host: str
    pid: int
    starttime: int | None
    token: int
    port_file: str
    path: Path
    incoming: bool = False  # a migration's copy that waits for the switch-over


def parse_record(path: Path, data: object) -> VMRecord:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    vm, host, pid, token = data.get("vm"), data.get("host"), data.get("pid"), data.get("token")
    starttime = data.get("starttime")
    if not isinstance(vm, str) or not isinstance(host, str):
        raise ValueError("vm and host must be strings")
    if not isinstance(pid, int) or not isinstance(token, int) or pid <= 0:
        raise ValueError("pid and token must be integers")
    if starttime is not None and not isinstance(starttime, int):
        raise ValueError("starttime must be an integer")
    incoming = data.get("incoming", False)
    if not isinstance(incoming, bool):
        raise ValueError("incoming must be true or false")
    return VMRecord(vm, host, pid, starttime, token, str(data.get("port_file", "")), path,
                    incoming)


def read_records(state_dir: Path) -> list[VMRecord]:
    """Every VM state file in `state_dir` (sorted by VM name); none if `state_dir` is not a
    directory or may not be read. Raises OSError if reading it fails otherwise and ValueError
    naming the file if a state file is not one."""
    records = []
    for name in _state_files(state_dir):
        path = state_dir / name
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue  # removed between listing and reading: that VM just stopped
        try:
            records.append(parse_record(path, json.loads(text)))
        except ValueError as exc:
            raise ValueError(f"{path}: not a VM state file ({exc})") from None
    return records


def _state_files(state_dir: Path) -> list[str]:
    """The sorted names of the ``*.json`` entries of `state_dir`, as ``glob("*.json")`` found
    them (`listing.names_in`: the agent lists them at every cycle)."""
    return names_in(state_dir, lambda name: name.endswith(".json"))


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a paused process is alive)."""
    return runs(pid, None)


def is_ours(record: VMRecord) -> bool:
    """Is the process `record` names alive, the same process (start time) and a process VM of
    that name on that host? (/proc/PID/stat read once for both.)"""
    stat = proc_stat(record.pid)
    if stat is None or not alive_in(stat):
        return False
    if record.starttime is not None and starttime_in(stat) != record.starttime:
        return False
    try:
        with open(f"/proc/{record.pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    words = [word.decode(errors="replace") for word in argv]
    if VM_MODULE not in words:
        return False
    pairs = dict(zip(words, [*words[1:], ""], strict=True))
    return pairs.get("--vm") == record.vm and pairs.get("--host") == record.host


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


HOST_MARK = ".host"


def claim(state_dir: Path, host: str) -> None:
    """Say in `state_dir` that `host`'s hypervisor keeps its VMs there (atomically)."""
    mark = state_dir / HOST_MARK
    with contextlib.suppress(OSError):
        if mark.read_text().strip() == host:
            return
    tmp = state_dir / f".{HOST_MARK}.{os.getpid()}.tmp"
    tmp.write_text(f"{host}\n")
    os.replace(tmp, mark)


def claimant(state_dir: Path) -> str | None:
    """The host whose hypervisor keeps its VMs in `state_dir` (None: nobody's, or unreadable)."""
    try:
        return (state_dir / HOST_MARK).read_text().strip() or None
    except OSError:
        return None
