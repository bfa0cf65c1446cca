"""Failsafe: keeping VMs while the store is lost for everyone (seed 002: two of three
coordination points powered off, and no node leaves the cluster).

A host whose lease can no longer be renewed would normally stop its VMs. It may keep them
only while *every* other host of the cluster is heard on heartbeats and says (in its
heartbeat flags) that it can not reach the store either. Why that is safe: only an agent
with store access can move a VM, and every agent is accounted for and without the store. The
moment one of them reaches the store (it says so) or goes silent, the others stop their VMs
at once: a manager that regains the store still waits for their leases to expire and their
watchdogs to fire before it moves anything.

A host that shuts down cleanly while the store is lost says so in its last heartbeats
(`FLAG_LEAVING`, VMs already stopped), and promises on its own disk not to rejoin before it
hears those hosts again (`core.agent`). Only then do the others stop counting on hearing it.
"""

from __future__ import annotations

from ringfence.core.membership import Membership
from ringfence.core.ports import FLAG_STORE_OK


def failsafe_blocker(membership: Membership, hosts: list[str], me: str,
                     departed: set[str]) -> str | None:
    """None if failsafe holds; else why not, naming the first host that breaks it."""
    for host in hosts:
        if host == me or host in departed:
            continue
        if not membership.hears(host):
            return f"{host} is not heard"
        if membership.flags_of(host) & FLAG_STORE_OK:
            return f"{host} reaches the store"
    return None
