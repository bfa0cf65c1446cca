"""A store member that rejoins after it was cut off must not force an election (issue 17).

Found in the lab on 7 December: after a power cut and a reboot, the host's etcd member started
before it could reach its peers, campaigned on its own (etcd 3.4 raises its term each time its
election timer runs out), and, once connected, made the leader step down for its higher term.
The store then answered nobody for about two seconds, long enough for a healthy host's lease to
go stale. etcd's `--pre-vote` stops this: a member only raises its term once a quorum would vote
for it. Every etcd the project starts (`etcd_local`, the lab's members) runs with it.

Real etcd processes on loopback: the member is cut off by stopping its two peers (SIGSTOP)
while it restarts, for four election timeouts, and the raft term the leader reports is
compared before and after.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from ringfence.etcd_local import ELECTION_MS, ETCD, Member, running_cluster

pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd is not installed")


def _status(member: Member) -> dict[str, object]:
    request = urllib.request.Request(f"{member.client_url}/v3/maintenance/status", data=b"{}",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=2.0) as answer:
        data: dict[str, object] = json.loads(answer.read())
    return data


def _term(member: Member) -> int:
    return int(str(_status(member)["raftTerm"]))


def _leads(member: Member) -> bool:
    status = _status(member)
    header = status["header"]
    assert isinstance(header, dict)
    return str(status["leader"]) == str(header["member_id"])


def _settled_term(members: list[Member], within: float = 10.0) -> int:
    """The raft term once every member reports the same leader and term."""
    deadline = time.monotonic() + within
    while True:
        try:
            states = {(str(_status(m)["leader"]), _term(m)) for m in members}
        except OSError:
            states = set()
        if len(states) == 1:
            return next(iter(states))[1]
        if time.monotonic() > deadline:
            raise AssertionError(f"the members did not agree on a leader: {states}")
        time.sleep(0.1)


def test_a_member_that_rejoins_after_being_cut_off_forces_no_election(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3) as cluster:
        before = _settled_term(cluster.members)
        # A follower: stopping the leader would itself cost an election.
        late = next(m for m in cluster.members if not _leads(m))
        first, second = (m for m in cluster.members if m is not late)
        late.kill()
        peers = [m.process for m in (first, second) if m.process is not None]
        for process in peers:
            os.kill(process.pid, signal.SIGSTOP)
        try:
            late.start(cluster.initial_cluster)
            time.sleep(4 * ELECTION_MS / 1000)  # the late member's election timer runs out
        finally:
            for process in peers:
                os.kill(process.pid, signal.SIGCONT)
        time.sleep(2 * ELECTION_MS / 1000)
        after = _settled_term(cluster.members)
    assert after == before, (f"the raft term went from {before} to {after}: the member that "
                             f"rejoined forced an election")
