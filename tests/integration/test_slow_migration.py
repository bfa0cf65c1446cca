"""Issue 10's real-process test: a live migration that takes 30 s runs as a job the agent's
cycles poll, so the source keeps heartbeating, renewing and petting throughout: nobody loses
its heartbeats, its watchdog never fires, and the disk file shows one writer at a time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import new_demo, wait_for
from ringfence.demo import split_brains

DELAY = 30.0


def test_a_30s_migration_during_a_drain_keeps_the_source_alive(tmp_path: Path) -> None:
    demo = new_demo(3, 3, tmp_path, migration_delay=DELAY)
    demo.write_cluster()
    for host in demo.hosts:
        demo.start_host(host)
    try:
        wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
        on_host2 = sorted(vm for vm, host in demo.placement_now().items() if host == "host2")
        assert on_host2, demo.placement_now()
        result = subprocess.run(
            [sys.executable, "-m", "ringfence.cli", "host", "maintenance", "host2", "on",
             "--config", str(demo.config_path)],
            capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        asked = time.time()
        # The copy takes 30 s: until then host2 still runs its VMs (and writes for them).
        time.sleep(DELAY * 0.6)
        still = demo.placement_now(0.5)
        assert all(still.get(vm) == "host2" for vm in on_host2), still
        wait_for(lambda: all(demo.placement_now(0.5).get(vm) not in (None, "host2")
                             for vm in on_host2), DELAY + 30, "host2 to be drained")
        moved_after = time.time() - asked
        assert moved_after >= DELAY * 0.9, moved_after
        time.sleep(2.0)
        journal = demo.journal()
        about_host2 = [e for e in journal if e.get("host") == "host2" and e["t"] >= asked]
        kinds = {e["kind"] for e in about_host2}
        assert not kinds & {"heartbeat_lost", "host_suspect", "watchdog_reset", "self_fence",
                            "host_fenced", "fence_started"}, sorted(kinds)
        assert "vm_migrated" in {e["kind"] for e in journal if e["t"] >= asked}
        assert split_brains(demo.writes()) == []
        assert demo.hosts[1].process is not None and demo.hosts[1].process.poll() is None, \
            "host2's agent was reset or died"
    finally:
        demo.stop()
