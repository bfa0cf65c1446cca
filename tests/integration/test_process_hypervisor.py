"""The process hypervisor with real VM processes: start, re-token, stop, destroy, migrate,
guest checks, and VMs that outlive their agent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringfence.hypervisor.base import HypervisorError, JobResult
from ringfence.hypervisor.process import ProcessGuestChecks, ProcessHypervisor, read_records


def disk_lines(disk: Path) -> list[dict[str, object]]:
    if not disk.exists():
        return []
    return [json.loads(line) for line in disk.read_text().splitlines() if line]


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(parent of the hosts' state directories, shared disk); kills leftover VMs after."""
    parent, disk = tmp_path / "vms", tmp_path / "disk"
    parent.mkdir()
    yield parent, disk
    for state_file in parent.glob("*/*.json"):
        try:
            record = json.loads(state_file.read_text())
            if alive(record["pid"]) and "process_vm" in Path(
                    f"/proc/{record['pid']}/cmdline").read_text():
                os.kill(record["pid"], signal.SIGKILL)
        except (OSError, ValueError, KeyError, TypeError):
            pass


def ok(job: Any) -> JobResult:
    """Wait for a hypervisor job; it must succeed."""
    result = job.wait(30)
    assert result is not None and result.ok, result
    return result  # type: ignore[no-any-return]


def failed(job: Any, match: str) -> JobResult:
    """Wait for a hypervisor job; it must fail, saying `match`."""
    result = job.wait(30)
    assert result is not None and not result.ok and re.search(match, result.detail), result
    return result  # type: ignore[no-any-return]


def test_start_check_retoken_stop(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    hv = ProcessHypervisor("h1", parent / "h1", disk)
    checks = ProcessGuestChecks(parent / "h1")
    assert hv.list_running() == {}
    assert checks.check("app") is False  # not running: a final no, not an exception

    ok(hv.start("app", 5))
    ok(hv.start("app", 5))  # idempotent: still one process
    assert hv.list_running() == {"app": 5}
    assert len(read_records(parent / "h1")) == 1
    assert checks.check("app") is True
    assert ProcessGuestChecks(parent / "h1", host="h2").check("app") is False
    assert wait_for(lambda: any(line["token"] == 5 for line in disk_lines(disk)))

    ok(hv.start("app", 8))  # a re-token: same process, new token on its next write
    pid = read_records(parent / "h1")[0].pid
    assert hv.list_running() == {"app": 8}
    assert read_records(parent / "h1")[0].pid == pid
    assert wait_for(lambda: disk_lines(disk)[-1]["token"] == 8)

    ok(hv.stop("app", 8))
    assert hv.list_running() == {}
    assert not alive(pid)
    assert checks.check("app") is False
    ok(hv.stop("app", 8))  # stopping a VM that does not run is fine
    lines = [line for line in disk_lines(disk) if line["vm"] == "app"]
    assert [line["seq"] for line in lines] == list(range(len(lines)))  # one writer, no gaps


def test_destroy_and_crash_detection(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    hv = ProcessHypervisor("h1", parent / "h1", disk)
    ok(hv.start("a", 1))
    ok(hv.start("b", 2))
    records = {r.vm: r for r in read_records(parent / "h1")}
    hv.destroy("a")
    assert not alive(records["a"].pid)
    hv.destroy("a")  # destroying what does not run is not an error
    os.kill(records["b"].pid, signal.SIGKILL)  # a guest crash
    assert wait_for(lambda: hv.list_running() == {})
    assert read_records(parent / "h1") == []  # stale state files are cleaned up


def test_paused_vm_counts_as_running_and_stop_still_works(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    hv = ProcessHypervisor("h1", parent / "h1", disk, stop_grace=1.0)
    ok(hv.start("p", 3))
    pid = read_records(parent / "h1")[0].pid
    os.kill(pid, signal.SIGSTOP)
    assert hv.list_running() == {"p": 3}
    assert ProcessGuestChecks(parent / "h1", timeout=0.2).check("p") is False  # no answer
    ok(hv.stop("p", 3))
    assert not alive(pid)


def test_migrate_moves_without_overlap(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    h1 = ProcessHypervisor("h1", parent / "h1", disk)
    h2 = ProcessHypervisor("h2", parent / "h2", disk)
    ok(h1.start("db", 4))
    assert wait_for(lambda: len(disk_lines(disk)) >= 3)
    ok(h1.migrate("db", "h2", 6))
    assert h1.list_running() == {}
    assert h2.list_running() == {"db": 6}
    assert ProcessGuestChecks(parent / "h2").check("db") is True
    assert ProcessGuestChecks(parent / "h1").check("db") is False
    assert wait_for(lambda: sum(line["host"] == "h2" for line in disk_lines(disk)) >= 3)
    hosts = [line["host"] for line in disk_lines(disk)]
    first_h2 = hosts.index("h2")
    assert set(hosts[:first_h2]) == {"h1"} and set(hosts[first_h2:]) == {"h2"}  # no interleaving
    failed(h1.migrate("db", "h2", 7), "does not run")
    ok(h1.start("db", 9))
    failed(h2.migrate("db", "h1", 10), "already runs on h1")
    h1.destroy("db")
    h2.destroy("db")


def test_failed_migration_keeps_the_vm_here(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    h1 = ProcessHypervisor("h1", parent / "h1", disk)
    ok(h1.start("x", 1))
    (parent / "h3").write_text("not a directory")  # no state directory for h3
    failed(h1.migrate("x", "h3", 2), "h3")
    ProcessHypervisor("h4", parent / "h4", disk)  # h4's agent keeps its VMs there
    (parent / "h4" / "x.port").mkdir(parents=True)  # the target VM can not write its port
    failed(h1.migrate("x", "h4", 2), "still runs on h1")
    assert h1.list_running() == {"x": 1}
    pid = read_records(parent / "h1")[0].pid
    stat = Path(f"/proc/{pid}/stat").read_text()
    assert stat[stat.rfind(")") + 2] != "T"  # the paused source was resumed
    assert ProcessGuestChecks(parent / "h1").check("x") is True
    assert ProcessHypervisor("h4", parent / "h4", disk).list_running() == {}


def test_migrating_to_a_host_whose_agent_keeps_its_vms_elsewhere_is_refused(
        cluster: tuple[Path, Path], tmp_path: Path) -> None:
    # Issue 17, defect 3: hosts with their own --state-dir. The copy used to be started in
    # PARENT/h2, where h2's agent never looks: it started its own, and the disk had two
    # writers while ringfence reported the migration done.
    parent, disk = cluster
    h1 = ProcessHypervisor("h1", parent / "h1", disk)
    h2 = ProcessHypervisor("h2", tmp_path / "elsewhere" / "h2", disk)
    ok(h1.start("db", 4))
    failed(h1.migrate("db", "h2", 6), r"h2's agent does not keep its VMs in")
    assert h1.list_running() == {"db": 4}
    assert h2.list_running() == {}
    assert read_records(parent / "h2") == [] if (parent / "h2").is_dir() else True
    assert ProcessGuestChecks(parent / "h1").check("db") is True
    h1.destroy("db")


def test_start_failure_is_a_hypervisor_error(cluster: tuple[Path, Path]) -> None:
    parent, _ = cluster
    broken = ProcessHypervisor("h1", parent / "h1", parent / "no-such-dir" / "disk")
    failed(broken.start("a", 1), "failed to start")
    assert broken.list_running() == {}
    missing = ProcessHypervisor("h1", parent / "h1", parent / "disk", python="/nonexistent/py")
    failed(missing.start("a", 1), "can not run")


def test_unreadable_state_is_an_error_not_an_empty_list(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    hv = ProcessHypervisor("h1", parent / "h1", disk)
    (parent / "h1" / "junk.json").write_text("{not json")
    with pytest.raises(HypervisorError, match=r"junk\.json"):
        hv.list_running()


def test_a_recycled_pid_is_not_taken_for_a_vm(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    state = parent / "h1"
    state.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (state / "ghost.json").write_text(json.dumps(
            {"vm": "ghost", "host": "h1", "pid": sleeper.pid, "starttime": None, "token": 1,
             "port_file": str(state / "ghost.port")}))
        assert ProcessHypervisor("h1", state, disk).list_running() == {}
        assert sleeper.poll() is None  # and nothing was done to that process
    finally:
        sleeper.kill()
        sleeper.wait()


AGENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ringfence.hypervisor.process import ProcessHypervisor
    hv = ProcessHypervisor("h1", Path(sys.argv[1]), Path(sys.argv[2]))
    hv.start("web", 11).wait(30)
    hv.start("db", 12).wait(30)
    print("started", flush=True)
    time.sleep(60)
""")


def test_vms_survive_an_agent_crash_and_are_found_again(cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(parent / "h1"), str(disk)],
                             stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == b"started"
        os.killpg(agent.pid, signal.SIGKILL)  # the agent and its whole process group
        agent.wait()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    restarted = ProcessHypervisor("h1", parent / "h1", disk)
    assert restarted.list_running() == {"web": 11, "db": 12}
    before = len(disk_lines(disk))
    assert wait_for(lambda: len(disk_lines(disk)) >= before + 4)  # still writing
    assert ProcessGuestChecks(parent / "h1").check("web") is True
    restarted.destroy("web")
    restarted.destroy("db")
    assert restarted.list_running() == {}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = [word.decode(errors="replace").partition("=") for word in raw if word]
    return {name: value for name, _, value in pairs}


def test_a_migrated_copy_starts_through_the_targets_launcher(
        cluster: tuple[Path, Path]) -> None:
    # Issue 11: in the lab every host is a network namespace, and the copy used to start in
    # the source's (a power cut of the source killed it). The launcher names where a host's
    # processes run; here `env` marks the process with the host it was launched for.
    from ringfence.hypervisor.process import launcher_from_template

    parent, disk = cluster
    launcher = launcher_from_template("env RF_TEST_LAUNCHED_FOR={host}")
    h1 = ProcessHypervisor("h1", parent / "h1", disk, launcher=launcher)
    h2 = ProcessHypervisor("h2", parent / "h2", disk, launcher=launcher)
    ok(h1.start("db", 4))
    started = read_records(parent / "h1")[0].pid
    assert "RF_TEST_LAUNCHED_FOR" not in _environ(started)  # its own VMs: started here
    ok(h1.migrate("db", "h2", 6))
    assert h2.list_running() == {"db": 6}
    moved = read_records(parent / "h2")[0].pid
    assert _environ(moved).get("RF_TEST_LAUNCHED_FOR") == "h2"
    assert ProcessGuestChecks(parent / "h2").check("db") is True
    h2.destroy("db")


@pytest.mark.parametrize("template, expected", [
    ("ip netns exec lab", "naming the target host as {host}"),
    ("", "naming the target host as {host}"),
    ("ip 'netns exec {host}", "not a command prefix"),
])
def test_a_launcher_template_without_the_host_is_refused(template: str, expected: str) -> None:
    from ringfence.hypervisor.process import launcher_from_template

    with pytest.raises(ValueError, match=re.escape(expected)):
        launcher_from_template(template)


def test_a_launcher_template_is_split_like_a_shell_command() -> None:
    from ringfence.hypervisor.process import launcher_from_template

    assert launcher_from_template("ip netns exec 'rf {host}'")("h2") == [
        "ip", "netns", "exec", "rf h2"]


def _incoming_pids(vm: str, host: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--incoming" in words and words[words.index("--vm") + 1] == vm and \
                words[words.index("--host") + 1] == host and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _waiting(vm: str, host: str) -> list[int]:
    """Incoming VMs that said so (their standard output is closed)."""
    found = []
    for pid in _incoming_pids(vm, host):
        try:
            if os.readlink(f"/proc/{pid}/fd/1") == os.devnull:
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_migration_target_waits_unseen_until_the_source_is_paused(
        cluster: tuple[Path, Path]) -> None:
    # The copy starts while the source runs (its slow start is not downtime) but writes
    # nothing and answers no check until the switch-over (the target lists it, as libvirt
    # lists a migration's paused copy); aborted, it leaves no trace.
    parent, disk = cluster
    copy = {"db": 30.0}  # seconds to "copy" its memory (`--migration-bandwidth`)
    h1 = ProcessHypervisor("h1", parent / "h1", disk, copy_time=copy.__getitem__)
    h2 = ProcessHypervisor("h2", parent / "h2", disk)
    ok(h1.start("db", 4))
    job = h1.migrate("db", "h2", 6)
    assert wait_for(lambda: len(_waiting("db", "h2")) == 1, timeout=10)
    (incoming,) = _waiting("db", "h2")
    written = len(disk_lines(disk))
    assert wait_for(lambda: len(disk_lines(disk)) >= written + 3)  # the source still runs
    assert h2.list_running() == {"db": 6}
    assert not (parent / "h2" / "db.port").exists()
    failed(h2.start("db", 6), "arriving on h2 by live migration")
    assert {line["host"] for line in disk_lines(disk)} == {"h1"}
    job.cancel()
    result = job.wait(10)
    assert result is not None and not result.ok and "still runs on h1" in result.detail
    assert wait_for(lambda: not alive(incoming))
    assert h1.list_running() == {"db": 4} and h2.list_running() == {}
    assert {line["host"] for line in disk_lines(disk)} == {"h1"}
    h1.destroy("db")


def test_a_migration_to_a_target_that_hangs_during_the_copy_leaves_the_source_running(
        cluster: tuple[Path, Path]) -> None:
    parent, disk = cluster
    h1 = ProcessHypervisor("h1", parent / "h1", disk, copy_time=lambda vm: 3.0)
    h2 = ProcessHypervisor("h2", parent / "h2", disk)
    ok(h1.start("db", 4))
    job = h1.migrate("db", "h2", 6)
    # It has said "incoming" once its standard output is closed (/dev/null): the copy runs.
    assert wait_for(lambda: len(_waiting("db", "h2")) == 1, timeout=10)
    (incoming,) = _waiting("db", "h2")
    os.kill(incoming, signal.SIGSTOP)  # the target host hangs during the copy
    failed(job, "does not answer")
    assert wait_for(lambda: not alive(incoming))
    assert h1.list_running() == {"db": 4} and h2.list_running() == {}
    written = len(disk_lines(disk))
    assert wait_for(lambda: len(disk_lines(disk)) >= written + 3)  # never paused
    h1.destroy("db")


def test_an_incoming_vm_nobody_resumes_gives_up_without_a_trace(tmp_path: Path) -> None:
    # Its source died mid-migration: no copy may wait for ever (or take over later).
    state, port = tmp_path / "db.json", tmp_path / "db.port"
    done = subprocess.run(
        [sys.executable, "-m", "ringfence.hypervisor.process_vm", "--vm", "db", "--host", "h2",
         "--token", "3", "--disk", str(tmp_path / "disk"), "--port-file", str(port),
         "--state-file", str(state), "--incoming", "--incoming-for", "0.5"],
        capture_output=True, timeout=30, check=False)
    assert done.returncode == 0 and done.stdout.decode().startswith("incoming ")
    assert not state.exists() and not port.exists()  # its incoming state file went too
    assert not (tmp_path / "disk").read_bytes()  # it never wrote


def test_the_targets_self_fence_ends_an_incoming_copy_and_the_migration_fails_at_once(
        cluster: tuple[Path, Path]) -> None:
    # Lab finding F (migration-into-a-host-that-fences-itself): libvirt lists a migration's
    # paused copy on the target, so the target's self-fence destroys it and the source's
    # migration call fails there and then. The copy must be listed, and its end noticed
    # during the copy, not when the 30 s copy would have ended.
    parent, disk = cluster
    h1 = ProcessHypervisor("h1", parent / "h1", disk, copy_time=lambda vm: 30.0)
    h2 = ProcessHypervisor("h2", parent / "h2", disk)
    ok(h1.start("db", 4))
    job = h1.migrate("db", "h2", 6)
    assert wait_for(lambda: h2.list_running() == {"db": 6}, timeout=10)
    assert not (parent / "h2" / "db.port").exists()  # listed, but not a guest that answers
    assert not ProcessGuestChecks(parent / "h2").check("db")
    h2.destroy("db")  # what h2's self-fence does to everything it lists
    assert h2.list_running() == {}
    result = job.wait(5)
    assert result is not None and not result.ok and "still runs on h1" in result.detail, result
    assert h1.list_running() == {"db": 4}
    written = len(disk_lines(disk))
    assert wait_for(lambda: len(disk_lines(disk)) >= written + 3)  # never paused
    assert {line["host"] for line in disk_lines(disk)} == {"h1"}
    h1.destroy("db")


def test_an_incoming_copy_ends_with_its_source(cluster: tuple[Path, Path]) -> None:
    # The source's host lost power mid-copy: libvirt tears the incoming domain down, so the
    # target's agent never takes a copy that will not run for the VM it is to recover.
    parent, disk = cluster
    h1 = ProcessHypervisor("h1", parent / "h1", disk, copy_time=lambda vm: 30.0)
    h2 = ProcessHypervisor("h2", parent / "h2", disk)
    ok(h1.start("db", 4))
    (source,) = read_records(parent / "h1")
    job = h1.migrate("db", "h2", 6)
    assert wait_for(lambda: h2.list_running() == {"db": 6}, timeout=10)
    (incoming,) = _incoming_pids("db", "h2")
    os.kill(source.pid, signal.SIGKILL)
    assert wait_for(lambda: not alive(incoming), timeout=3)
    assert h2.list_running() == {} and not (parent / "h2" / "db.json").exists()
    failed(job, "still runs on h1|ended during the copy")
    assert {line["host"] for line in disk_lines(disk)} == {"h1"}
