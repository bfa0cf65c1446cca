"""A store that nobody can reach for longer than the host lease, with real processes (issue 9,
case 2): the demo's cluster on SQLite, the file locked by another process for 12 s. Every host
still hears every other and none reaches the store: they keep their VMs in failsafe, and when
the lock goes the leases are still there (SQLite's leases outlive an outage, as etcd's do).
Ground truth: the VMs' own writes."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

from conftest import new_demo, wait_for
from ringfence.agent.journal import read_journal
from ringfence.demo import split_brains


def test_a_12s_lock_on_the_store_file_kills_no_host(tmp_path: Path) -> None:
    demo = new_demo(3, 3, tmp_path, fencing=False)
    demo.write_cluster()
    for host in demo.hosts:
        demo.start_host(host)
    try:
        wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
        before = demo.placement_now()
        holder = sqlite3.connect(demo.workdir / "store.db", isolation_level=None, timeout=30)
        holder.execute("BEGIN EXCLUSIVE")
        locked_at = time.time()
        time.sleep(12.0)
        holder.execute("ROLLBACK")
        holder.close()
        time.sleep(10.0)
        kinds = [e["kind"] for host in demo.hosts
                 for e in read_journal(demo.state / f"journal-{host.name}.jsonl")
                 if e["t"] >= locked_at]
        assert "self_fence" not in kinds
        assert "failsafe_entered" in kinds
        assert demo.placement_now() == before, "a VM stopped or moved"
        records = demo.writes()
        assert split_brains(records) == []
        for vm in demo.vms:  # and no VM stopped writing for long
            times = sorted(r["t"] for r in records if r["vm"] == vm and r["t"] >= locked_at)
            assert times and max(b - a for a, b in itertools.pairwise(times)) < 2.0
    finally:
        demo.stop()
