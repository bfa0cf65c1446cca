"""A store that is not this cluster's store is never believed (issue 9, case 1), with real
processes: the demo's cluster on SQLite, the store file deleted under the running agents, one
agent killed and started again. Ground truth: the VMs' own writes to the shared disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import new_demo, wait_for
from ringfence.agent.journal import read_journal
from ringfence.demo import split_brains


def test_a_deleted_sqlite_store_is_not_replaced_by_an_empty_one(tmp_path: Path) -> None:
    demo = new_demo(3, 6, tmp_path)
    demo.write_cluster()
    for host in demo.hosts:
        demo.start_host(host)
    try:
        wait_for(lambda: len(demo.placement_now()) == len(demo.vms), 40, "every VM to run")
        store = Path(str(demo.workdir / "store.db"))
        for path in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
            path.unlink(missing_ok=True)
        time.sleep(5.0)
        victim = demo.hosts[1]
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)  # the agent only
        victim.process.wait()
        restarted = time.time()
        demo.start_host(victim)
        time.sleep(30.0)
        records = demo.writes()
        assert split_brains(records) == [], "two hosts ran one VM"
        # Its restarted life only: before, it may have led and adopted the VMs at the start.
        kinds = [e["kind"] for e in read_journal(demo.state / f"journal-{victim.name}.jsonl")
                 if e["t"] >= restarted]
        assert "store_foreign" in kinds or "waiting_for_quorum" in kinds
        assert "vm_adopted" not in kinds
        for host in demo.hosts:
            journal = read_journal(demo.state / f"journal-{host.name}.jsonl")
            fenced_by_watchdog = [e for e in journal if e["kind"] == "host_fenced"
                                  and "lease gone" in e.get("text", "")
                                  and e["t"] > time.time() - 40]
            assert not [e for e in fenced_by_watchdog if e["by"] == victim.name]
    finally:
        demo.stop()


def test_status_does_not_create_a_store(tmp_path: Path) -> None:
    demo = new_demo(3, 1, tmp_path)
    demo.write_cluster()
    store = demo.workdir / "store.db"
    assert not store.exists()
    result = subprocess.run([sys.executable, "-m", "ringfence.cli", "status", "--config",
                             str(demo.config_path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert not store.exists(), "ringfence status created an empty store"
