"""Side by side: the same power-off in the same three-namespace topology, ringfence against
Pacemaker 2.1 + corosync 3, trials alternating A B A B on one machine in one run.

A (ringfence): the lab cluster of bench/lab_failover.py (three hosts, one process VM, the
lab's power fence agent on every host, heartbeat 200 ms). B (Pacemaker): bench/pacemaker_lab.py
(three nodes, one Dummy resource, stonith on with a fence agent that kills the node's
namespace, corosync token ``--token`` ms). Each trial kills every process of the node that
runs the workload and measures, from the kill, until the workload really runs elsewhere: for
ringfence the VM's first disk write on another host, for Pacemaker the Dummy's state file
appearing on another node. Prints each system's median and max, and the ratio B / A from the
paired trials (trial i of A with trial i of B). Both clusters stay up during the whole run, so
each system runs beside the other's idle cluster.

    python bench/lab_vs_pacemaker.py [--trials 5] [--token 1000]

Installs Pacemaker with scripts/install-pacemaker if it is missing (root; no service is
started). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lab_common import machine_line, open_lab, power_off_trial, settled, summary, three_hosts
from pacemaker_lab import NODES, PacemakerLab

REPO = Path(__file__).resolve().parent.parent


def pacemaker_trial(lab: PacemakerLab, timeout: float = 120.0) -> tuple[int, float]:
    deadline = time.time() + 180
    victim = lab.holder()
    while victim is None:
        if time.time() > deadline:
            raise RuntimeError("Pacemaker did not settle")
        time.sleep(0.5)
        victim = lab.holder()
    time.sleep(2.0)
    others = [n for n in NODES if n != victim]
    for node in others:
        lab.state_file(node).unlink(missing_ok=True)
    kill = time.time()
    lab.kill(victim)
    started = None
    while time.time() - kill < timeout and started is None:
        for node in others:
            path = lab.state_file(node)
            if path.exists():
                started = path.stat().st_mtime - kill
                break
        time.sleep(0.02)
    if started is None:
        raise RuntimeError(f"Dummy did not start elsewhere within {timeout:g}s")
    lab.reboot(victim)
    lab.wait_online(180.0)
    return victim, started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--token", type=int, default=1000,
                        help="corosync totem token in ms (0: corosync's default)")
    args = parser.parse_args()
    subprocess.run(["bash", str(REPO / "scripts" / "install-pacemaker")], check=True)
    print(f"side by side, {args.trials} paired trials, Pacemaker token "
          f"{args.token or 'default'} ms; {machine_line()}", flush=True)
    ours: list[float] = []
    theirs: list[float] = []
    with open_lab(three_hosts(fencing=True)) as lab:
        assert lab.slot is not None
        pacemaker = PacemakerLab(Path(tempfile.gettempdir()) / f"ringfence-bench-pcmk-"
                                 f"{lab.slot.number}", slot=lab.slot.number,
                                 token_ms=args.token or None)
        try:
            pacemaker.up()
            for n in range(args.trials):
                a = power_off_trial(lab, "vm1", "fence")
                lab.wait_until(lambda: settled(lab, "vm1") is not None, 120.0)
                print(f"  A{n + 1} ringfence: {a.row()}", flush=True)
                victim, b = pacemaker_trial(pacemaker)
                print(f"  B{n + 1} Pacemaker: node{victim} killed, Dummy started elsewhere "
                      f"{b:5.2f} s", flush=True)
                ours.append(a.running)
                theirs.append(b)
        finally:
            pacemaker.down()
    ratios = [b / a for a, b in zip(ours, theirs, strict=True) if a > 0]
    print(f"ringfence (VM running elsewhere): {summary(ours)}")
    print(f"Pacemaker (Dummy started elsewhere): {summary(theirs)}")
    if ratios:
        print(f"Pacemaker / ringfence, paired: {statistics.median(ratios):.2f}x median "
              f"({min(ratios):.2f}x to {max(ratios):.2f}x)")
    print(machine_line())


if __name__ == "__main__":
    main()
