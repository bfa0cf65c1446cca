"""False-failover soak on a real lab cluster: a bad heartbeat link, flaps, store restarts.

Three hosts, three process VMs (one per host), the lab's power fence agents, etcd members in
the hosts. For the whole run, heartbeat network ``ring1`` loses 30 % of the heartbeat
datagrams (dropped at random by the lab's switch) and delays every one of them by a uniform
random time in [0, 200 ms) (the lab's user-space relay); every ``--flap-every`` one host's
``ring1`` cable is pulled and put back (a carrier flap, hosts in turn); every
``--store-every`` one host's etcd member is killed and started again 5 s later (hosts in
turn), the first after a minute. Nothing should fail over: the figures are the fences
(``fence_started``), hosts proven fenced (``host_fenced``), self-fences and VM restarts (VM
processes started after each VM's first), with a target of 0 for all. Degraded-host evacuation
is off: it moves VMs on purpose, which is not what this run counts (and the flaps here stay
below the degradation threshold anyway).

    python bench/lab_soak.py [--duration 2m] [--flap-every 45s] [--store-every 3m]

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools

from lab_common import machine_line, open_lab, three_hosts
from ringfence.sim.scenario import Event
from ringfence.units import parse_duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="2m")
    parser.add_argument("--flap-every", default="45s")
    parser.add_argument("--store-every", default="3m")
    parser.add_argument("--loss", type=float, default=0.3)
    parser.add_argument("--jitter", default="200ms")
    args = parser.parse_args()
    duration = parse_duration(args.duration)
    flap_every, store_every = parse_duration(args.flap_every), parse_duration(args.store_every)
    jitter = parse_duration(args.jitter)
    data = three_hosts(fencing=True, vms=3)
    data["cluster"]["policy"] = {"evacuate_degraded": False}
    hosts = [h["name"] for h in data["cluster"]["hosts"]]
    print(f"soak {args.duration}: ring1 {args.loss:.0%} loss and {args.jitter} jitter, a flap "
          f"every {args.flap_every}, a store member restarted every {args.store_every}; "
          f"{machine_line()}", flush=True)
    with open_lab(data, loss={"ring1": args.loss},
                  jitter={(h, "ring1"): jitter for h in hosts}) as lab:
        assert lab.store is not None
        flappers, members = itertools.cycle(hosts), itertools.cycle(hosts)
        next_flap, next_store = flap_every, min(60.0, store_every)
        flaps = restarts = 0
        end = duration
        while lab.records.now() < end:
            now = lab.records.now()
            if now >= next_flap:
                lab.apply(Event(at=0.0, do="link_flap", host=next(flappers), network="ring1",
                                count=1))
                flaps += 1
                next_flap += flap_every
            if now >= next_store:
                member = lab.store.members[next(members)]
                if member.process is not None:
                    member.process.kill()
                    member.reap()
                    restarts += 1
                    name = member.name
                    lab.scheduler.after(5.0, lambda name=name: lab.store.start(name)
                                        if lab.store else None)
                next_store += store_every
            lab.wait(min(1.0, max(0.05, end - lab.records.now())))
        entries, _ = lab.journal_entries_now()
        writes = lab.writes()
    counts = {kind: sum(1 for e in entries if e.kind == kind)
              for kind in ("fence_started", "host_fenced", "self_fence", "vm_recovered",
                           "heartbeat_lost", "jeopardy")}
    started: dict[str, int] = {}
    for write in writes:
        if write.seq == 0:
            started[write.vm] = started.get(write.vm, 0) + 1
    vm_restarts = sum(max(0, n - 1) for n in started.values())
    print(f"applied: {flaps} carrier flaps, {restarts} store member restarts")
    print(f"fences {counts['fence_started']}, hosts fenced {counts['host_fenced']}, "
          f"self-fences {counts['self_fence']}, VM recoveries {counts['vm_recovered']}, "
          f"VM restarts {vm_restarts}  (target 0 for all)")
    print(f"warnings only: heartbeat_lost {counts['heartbeat_lost']}, jeopardy "
          f"{counts['jeopardy']}")
    print(machine_line())


if __name__ == "__main__":
    main()
