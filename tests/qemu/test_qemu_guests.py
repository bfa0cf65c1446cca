"""Real QEMU guests driven by ringfence's libvirt driver, on two libvirt hosts in namespaces
(tests/qemu/conftest.py): boot and answer, disk heartbeats, a killed QEMU noticed through
libvirt's life-cycle events, live migration without restart, and the disk lock refusing a
second start elsewhere.

The ground truth is the guest's own disk (`ringfence.guest.heartbeat`): every 200 ms the guest
writes a record (its boot id and a counter) there, so a restart shows as a new boot id and two
copies at once as two boot ids interleaved along the counter.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from qemu_helpers import wait_for

from ringfence.guest.heartbeat import Beat, one_writer_problems, read_head, read_ring
from ringfence.hypervisor.base import JobResult

pytestmark = pytest.mark.qemu


def ok(job: Any, timeout: float = 120.0) -> JobResult:
    result = job.wait(timeout)
    assert result is not None, f"{job.name} did not end within {timeout:g}s"
    assert result.ok, result.detail
    return result


def beats_after(disk: Path, seq: int) -> Beat | None:
    head = read_head(disk)
    return head if head is not None and head.seq > seq else None


def test_guest_boots_answers_over_http_and_its_disk_heartbeat_advances(qemu_lab: Any) -> None:
    guests = {"web1": qemu_lab.guest("web1", 1)}
    h1 = qemu_lab.driver("h1")
    ok(h1.start("web1", 11))
    assert h1.list_running() == {"web1": 11}
    disk = guests["web1"].disk
    first = wait_for("first heartbeat on the disk", lambda: read_head(disk))
    later = wait_for("the heartbeat advancing", lambda: beats_after(disk, first.seq + 5))
    assert (later.name, later.boot) == ("web1", first.boot)
    assert qemu_lab.http_get(guests["web1"].address, "/").strip() == "hello from web1"
    assert int(wait_for("the guest's HTTP counter", lambda: qemu_lab.http_get(
        guests["web1"].address, "/counter"))) >= first.seq
    assert one_writer_problems(read_ring(disk)) == []
    ok(h1.stop("web1", 11))
    assert h1.list_running() == {}
    assert h1.take_lost() == {}  # stopped by the driver: not a lost guest


def test_stop_with_a_stale_token_is_refused(qemu_lab: Any) -> None:
    qemu_lab.guest("tok1", 2)
    h1 = qemu_lab.driver("h1")
    ok(h1.start("tok1", 20))
    stale = h1.stop("tok1", 19).wait(60)
    assert stale is not None and not stale.ok and "token 20" in stale.detail
    assert h1.list_running() == {"tok1": 20}
    h1.destroy("tok1")
    assert h1.list_running() == {}


def test_killed_qemu_is_noticed_through_a_life_cycle_event(qemu_lab: Any) -> None:
    guests = {"crash1": qemu_lab.guest("crash1", 3)}
    h2 = qemu_lab.driver("h2")
    ok(h2.start("crash1", 30))
    disk = guests["crash1"].disk
    wait_for("crash1 heartbeating", lambda: read_head(disk))
    pid = wait_for("crash1's QEMU pid", lambda: qemu_lab.qemu_pid("h2", "crash1"))
    h2.changed.clear()
    os.kill(pid, signal.SIGKILL)
    assert h2.changed.wait(30), "no life-cycle event after QEMU was killed"
    lost = wait_for("crash1 reported lost", h2.take_lost, timeout=10)
    assert lost == {"crash1": "its QEMU process died"}
    assert h2.list_running() == {}
    ok(h2.start("crash1", 31))  # restarted in place, on the same disk: it counts on
    before = read_ring(disk)
    after = wait_for("a heartbeat of the new boot", lambda: (
        (b := read_head(disk)) is not None and b.boot != before[-1].boot and b))
    assert after.seq > before[-1].seq
    assert one_writer_problems(read_ring(disk)) == []
    h2.destroy("crash1")


def test_live_migration_keeps_the_guest_running_without_restart(qemu_lab: Any) -> None:
    guests = {"mig1": qemu_lab.guest("mig1", 4)}
    h1, h2 = qemu_lab.driver("h1"), qemu_lab.driver("h2")
    ok(h1.start("mig1", 40))
    disk = guests["mig1"].disk
    first = wait_for("mig1 heartbeating", lambda: read_head(disk))
    before = wait_for("a few beats", lambda: beats_after(disk, first.seq + 3))
    job = h1.migrate("mig1", "h2", 41)
    result = ok(job)
    assert "downtime" in result.detail and int(job.progress.completed["downtime"]) > 0
    assert result.downtime is not None and 0 < result.downtime < 5  # seconds, as journaled
    assert h1.list_running() == {} and h2.list_running() == {"mig1": 41}
    after = wait_for("beats after the migration", lambda: beats_after(disk, before.seq + 5))
    assert after.boot == first.boot  # the same boot of the guest: not restarted
    assert after.uptime > before.uptime
    assert one_writer_problems(read_ring(disk)) == []
    assert h1.take_lost() == {} and h2.take_lost() == {}
    assert qemu_lab.http_get(guests["mig1"].address, "/boot").strip() == first.boot
    h2.destroy("mig1")


def test_the_guest_agent_answers_guest_ping_and_moves_with_the_guest(qemu_lab: Any) -> None:
    """`verify: {guest_agent: true}`: the guest runs QEMU's guest agent on the domain's
    org.qemu.guest_agent.0 channel; ringfence's check asks it for guest-ping, on the host
    that runs the guest, and gets no answer where it does not run."""
    from ringfence.probes.guest import LibvirtGuestAgent

    qemu_lab.guest("qga1", 7)
    h1, h2 = qemu_lab.driver("h1"), qemu_lab.driver("h2")
    on1, on2 = LibvirtGuestAgent(qemu_lab.hosts["h1"].uri), \
        LibvirtGuestAgent(qemu_lab.hosts["h2"].uri)
    try:
        assert not on1.answers("qga1", 1.0)  # not running: no answer, no exception
        ok(h1.start("qga1", 70))
        assert wait_for("the guest agent answering on h1", lambda: on1.answers("qga1", 2.0),
                        timeout=90)
        assert not on2.answers("qga1", 1.0)
        ok(h1.migrate("qga1", "h2", 71))
        assert wait_for("the guest agent answering on h2", lambda: on2.answers("qga1", 2.0),
                        timeout=60)
        assert not on1.answers("qga1", 1.0)
        h2.destroy("qga1")
        assert not on2.answers("qga1", 1.0)
    finally:
        on1.close()
        on2.close()


def test_the_lease_refuses_a_second_start_where_qemu_s_own_lock_can_not_see(
        qemu_lab: Any) -> None:
    """Shared block storage: each host opens its own device node for one disk, so QEMU's
    image locks (local to one kernel) do not see the other host's QEMU; the lock manager's
    lease in the shared lock space, named by the disk's path, is what refuses."""
    guests = {"lease1": qemu_lab.guest("lease1", 6)}
    h1, h2 = qemu_lab.driver("h1"), qemu_lab.driver("h2")
    own = qemu_lab.shadow("h2", guests["lease1"].disk)  # h2 sees another file at the same path
    ok(h1.start("lease1", 60))
    wait_for("lease1 heartbeating", lambda: read_head(guests["lease1"].disk))
    refused = h2.start("lease1", 61).wait(120)
    assert refused is not None and not refused.ok
    assert "resource busy" in refused.detail and "is locked" in refused.detail, refused.detail
    assert h2.list_running() == {}
    assert read_head(own) is None  # h2's QEMU never ran the guest
    h1.destroy("lease1")


# Last of the module: it cuts h1's power, and the lab is shared by the module's tests.
def test_a_second_start_on_another_host_is_refused_while_the_first_runs(qemu_lab: Any) -> None:
    guests = {"lock1": qemu_lab.guest("lock1", 5)}
    h1, h2 = qemu_lab.driver("h1"), qemu_lab.driver("h2")
    ok(h1.start("lock1", 50))
    disk = guests["lock1"].disk
    first = wait_for("lock1 heartbeating", lambda: read_head(disk))
    refused = h2.start("lock1", 51).wait(120)
    assert refused is not None and not refused.ok
    assert "lock" in refused.detail, refused.detail
    assert h2.list_running() == {}
    # virtlockd holds the disk's lease in the shared lock space (a second line of defence:
    # on this one machine QEMU's own image lock refuses first, see ringfence.guest.libvirtd).
    leases = list((qemu_lab.shared / "locks").iterdir())
    assert leases and any(_held(lease) for lease in leases)
    wait_for("more beats of the one copy", lambda: beats_after(disk, first.seq + 3))
    assert {b.boot for b in read_ring(disk)} == {first.boot}
    # Power cut on h1: the locks go with its processes, and h2 may now start the guest.
    qemu_lab.power_off("h1")
    last = read_head(disk)
    assert last is not None
    ok(h2.start("lock1", 52))
    took_over = wait_for("lock1 heartbeating on h2", lambda: (
        (b := read_head(disk)) is not None and b.boot != first.boot and b))
    assert took_over.seq > last.seq
    assert one_writer_problems(read_ring(disk)) == []
    h2.destroy("lock1")


def _held(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)
    return False

