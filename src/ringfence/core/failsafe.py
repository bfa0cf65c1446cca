"""Failsafe: keeping VMs while the store is lost for everyone (seed 002: two of three
coordination points powered off, and no node leaves the cluster).

A host whose lease can no longer be renewed would normally stop its VMs. It may keep them
only while *every* other host of the cluster is heard on heartbeats and says (in its
heartbeat flags) that it can not reach the store either. Why that is safe: only an agent
with store access can move a VM, and every agent is accounted for and without the store. The
moment one of them goes silent, the others stop their VMs at once: a manager that regains the
store still waits for their leases to expire and their watchdogs to fire before it moves
anything.

When the store comes back, it does not come back for every host at the same instant (the lab
saw one host reach it a second or more before the other). A host that hears a peer reach the
store may keep its VMs, and keep petting its watchdog, only as long as that peer *vouches*
for its lease: the peer read the host's lease in the store and its time to live there
(`core.ports.LeaseReport`), and the host turns that into a deadline on its own clock:

    deadline = (own send time of the heartbeat the report echoes) + remaining
               - safety_margin - clock_margin

The echoed heartbeat was sent before the peer asked the store (the peer had received it),
and the store answered after the question, so the lease lives in the store at least until
send time + remaining: no two clocks are compared, only causality. Pets end `safety_margin`
before that, as in the ordinary lease rule, so the watchdog argument holds unchanged: the
manager moves nothing before it has seen the lease gone and waited `watchdog_timeout +
clock_margin`. Without a report (or with a report about another lease, or one that has run
out), the host self-fences at once, as before.

"Reaches the store" is news of some age: a host says so until one of its store calls fails, and
a call to a store without a leader waits its whole deadline before it fails. CI's lab saw a
host whose lease went stale while its peer's renewal was still waiting: the peer still said
"reaches", and the host self-fenced, then the peer (the host no longer heard). So a heartbeat
also says whether the sender's newest answered store call is recent (`FLAG_STORE_FRESH`,
within `store_news_window` of its send time), and the hosts weigh the claim by what it
decides:

- a host whose lease goes stale, not yet in failsafe, counts a peer as reaching the store only
  on fresh news: an old "reaches" does not say that the store answers the peer and not us.
  The window ends early enough that a peer which last reached the store before our own
  renewal was due no longer says so when our lease goes stale (renewals out of phase by up
  to the renewal interval, two heartbeats for the news to arrive);
- a host in failsafe counts a peer's "reaches" once that peer has had fresh news at any time
  during this failsafe (`FailsafeView` with `fresh_seen`), then as before on the flag alone.
  This loses nothing of the argument above: a manager moves a VM only after a store call
  answered that the lease is gone, and that answer makes its news fresh for the whole window,
  longer than the heartbeat timeout in which we must hear it (or self-fence anyway).

The store can also come back for a peer a moment *before* our own lease goes stale, while our
own path to it is still cut off (the lab, 7 December: an etcd member that rejoined after a
reboot forced an election; the store answered one host 0.05 s before the other's lease went
stale, and that host self-fenced 4 ms before its own renewal went through). Not yet in
failsafe, we would count that peer as back and self-fence with no report to keep us. So a host
that reaches the store again owes its first report also to every peer heard without fresh news
of the store (`LeaseReporter.uncertain`), and a host whose lease goes stale may enter failsafe
on such a report: the same proof as above, about a store that was lost for both of us. A host
cut off from a store that never left the others gets no such report (nobody returned), and
self-fences as before.

A host that shuts down cleanly while the store is lost says so in its last heartbeats
(`FLAG_LEAVING`, VMs already stopped), and promises on its own disk not to rejoin before it
hears those hosts again (`core.agent`). Only then do the others stop counting on hearing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ringfence.config import Timing
from ringfence.core.leases import host_lease_key
from ringfence.core.membership import Membership
from ringfence.core.ports import (
    FLAG_FAILSAFE,
    FLAG_SAYS_FRESHNESS,
    FLAG_STORE_FRESH,
    FLAG_STORE_OK,
    LeaseReport,
)
from ringfence.store.base import Store

SENT_KEPT = 1024  # heartbeat send times remembered (at 0.2 s: over three minutes)


@dataclass(frozen=True, slots=True)
class FailsafeView:
    """What the heartbeats say about failsafe right now. `broken`: why failsafe can not hold
    whatever the store says (a host not heard), or None; `back`: the hosts heard that say they
    reach the store (failsafe then holds only while one of them vouches for our lease)."""

    broken: str | None
    back: tuple[str, ...]


def store_news_window(timing: Timing) -> float:
    """How long after the send of its newest answered store call a host says its news of the
    store is fresh (see the module). A peer renewing up to one renewal interval after us, and
    its news two heartbeats on the way, must have lost it before our lease is stale; and the
    window is never shorter than the heartbeat timeout and one heartbeat, in which a host in
    failsafe must hear it."""
    renewal = timing.host_lease_ttl / 3  # `leases.renewal_interval`
    out_of_phase = (timing.host_lease_ttl - timing.safety_margin - renewal
                    - 2 * timing.heartbeat_interval)
    return max(out_of_phase, timing.effective_heartbeat_timeout + timing.heartbeat_interval)


def has_fresh_news(flags: int) -> bool:
    """Does a heartbeat with these flags say its sender reached the store lately?"""
    if not flags & FLAG_STORE_OK:
        return False
    return bool(flags & FLAG_STORE_FRESH or not flags & FLAG_SAYS_FRESHNESS)


def failsafe_view(membership: Membership, hosts: list[str], me: str, departed: set[str],
                  fresh_seen: set[str] | None = None) -> FailsafeView:
    """`fresh_seen`: None for a host not in failsafe (a peer counts as back on fresh news
    only); in failsafe, the peers heard with fresh news since it began (each of them counts
    as back on its flag alone)."""
    back: list[str] = []
    for host in hosts:
        if host == me or host in departed:
            continue
        if not membership.hears(host):
            return FailsafeView(f"{host} is not heard", ())
        flags = membership.flags_of(host)
        if has_fresh_news(flags) or (fresh_seen is not None and host in fresh_seen
                                     and flags & FLAG_STORE_OK):
            back.append(host)
    return FailsafeView(None, tuple(back))


def heard_fresh(membership: Membership, hosts: list[str], me: str) -> set[str]:
    """The peers heard now whose heartbeats bring fresh news of the store."""
    return {h for h in hosts if h != me and membership.hears(h)
            and has_fresh_news(membership.flags_of(h))}


class SentTimes:
    """When this host sent its recent heartbeats, by heartbeat number, on its own clock (read
    before the send, so never later than the send itself). Numbers only grow, so the dict's
    insertion order is their order and the oldest goes first."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def note(self, seq: int, now: float) -> None:
        if seq in self.at:
            return
        self.at[seq] = now
        if len(self.at) > SENT_KEPT:
            del self.at[next(iter(self.at))]

    def of(self, seq: int) -> float | None:
        return self.at.get(seq)


def vouched_until(reports: Mapping[str, LeaseReport], lease: int | None, sent: SentTimes,
                  timing: Timing) -> tuple[float, str | None]:
    """The latest deadline (own clock) that any peer's report about our lease `lease` gives,
    and the peer that gives it; (-inf, None) when none does."""
    best, best_peer = float("-inf"), None
    if lease is None:
        return best, best_peer
    for peer, report in sorted(reports.items()):
        if report.lease != lease or report.remaining <= 0:
            continue
        sent_at = sent.of(report.echo)
        if sent_at is None:
            continue  # not a heartbeat of this life (or too old to remember): proves nothing
        deadline = sent_at + report.remaining - timing.safety_margin - timing.clock_margin
        if deadline > best:
            best, best_peer = deadline, peer
    return best, best_peer


class LeaseReporter:
    """The other side: a host that reaches the store reads there the lease of every peer
    that says it is in failsafe, and sends each its `LeaseReport` in the heartbeats that
    follow (`reports`, by the peer's host index). Two store calls per such peer and decision
    cycle, only while someone is in failsafe and this host's lease is fresh.

    Until it has tried once for every such peer since it reached the store again, the host
    does not yet say in its heartbeats that it reaches the store (`owed`): a peer that heard
    "reaches the store" before the report would have to self-fence. Holding the flag back
    that long is safe because nothing can move meanwhile: the reports come first in the
    decision cycle, before the VM keeper and the manager, and a failed attempt counts as
    tried.

    "Such peers", at the return, are also those heard without fresh news of the store that
    are not in failsafe yet (`uncertain`): the store was lost for them too, and their lease
    may go stale a moment after our return, before the report a failsafe flag would ask for
    could reach them (the lab saw a host self-fence that way, 0.4 s before the store came back
    for it). Each of them gets one report at the return, kept (a report never goes stale)
    until the peer has fresh news again; from the moment it says failsafe, it is read again
    at every cycle like the others. A peer cut off from the store alone, while we keep it,
    gets nothing: we never returned, so nothing is owed."""

    def __init__(self, membership: Membership, hosts: list[str], me: str) -> None:
        self.membership = membership
        self.hosts = hosts
        self.me = me
        self.reports: dict[int, LeaseReport] = {}
        self.tried: set[str] = set()  # peers tried since this host reached the store again
        # Lost (or not yet reached) the store since the last reports: the next ones owe the
        # peers without fresh news their first report too.
        self.returning = True
        self.losses = 0  # counts `store_lost` calls: a try that spans one does not count

    def _heard_on(self, fingerprint: int) -> list[tuple[str, int]]:
        """The peers heard now whose heartbeats name our store, with their flags."""
        membership = self.membership
        return [(h, membership.flags_of(h)) for h in self.hosts if h != self.me
                and membership.hears(h) and membership.store_of(h) == fingerprint]

    def wanted(self, fingerprint: int) -> list[str]:
        """Peers heard now, on our store, that say they keep their VMs in failsafe."""
        return [h for h, flags in self._heard_on(fingerprint) if flags & FLAG_FAILSAFE]

    def uncertain(self, fingerprint: int) -> list[str]:
        """Peers heard now, on our store, not in failsafe, whose heartbeats bring no fresh
        news of the store: owed one report when we reach the store again."""
        return [h for h, flags in self._heard_on(fingerprint)
                if not flags & FLAG_FAILSAFE and not has_fresh_news(flags)]

    def owed(self, fingerprint: int) -> bool:
        """Is a first attempt still owed to a peer in failsafe, or (after our return) to one
        without fresh news?"""
        if any(h not in self.tried for h in self.wanted(fingerprint)):
            return True
        return self.returning and any(h not in self.tried for h in self.uncertain(fingerprint))

    def store_lost(self) -> None:
        """This host lost the store: the next return owes every peer a first attempt again
        (the reports made stay: each is a lower bound that never goes stale)."""
        self.tried.clear()
        self.returning = True
        self.losses += 1

    def returned(self) -> None:
        """This host reaches the store again (its lease renewed after a loss): attempts made
        before, which failed, are not the first attempts the return owes."""
        self.store_lost()

    def refresh(self, store: Store, fingerprint: int) -> None:
        """Read the leases of the peers in failsafe, and once since our return those of the
        peers without fresh news (`uncertain`). Raises StoreUnavailable; every peer then
        counts as tried, unless the store was lost or came back while we tried (the lease
        cycle runs while this one waits in a store call): then nothing does."""
        losses = self.losses
        wanted = self.wanted(fingerprint)
        uncertain = self.uncertain(fingerprint)
        first = [h for h in uncertain if h not in self.tried] if self.returning else []
        self.returning = False  # the peers uncertain now are the ones this return owes
        index = self.membership.topology.index
        keep = {index(h) for h in (*wanted, *uncertain)}
        for known in list(self.reports):
            if known not in keep:
                del self.reports[known]
        self.tried &= {*wanted, *uncertain}
        try:
            for host in (*wanted, *first):
                self._report(store, host)
                if self.losses == losses:
                    self.tried.add(host)
        finally:
            if self.losses == losses:
                self.tried |= {*wanted, *uncertain}

    def _report(self, store: Store, host: str) -> None:
        index = self.membership.topology.index(host)
        # The echo is taken before the store is asked: that order is the whole proof.
        echo = self.membership.seq_of(host)
        if echo <= 0:
            return
        held = store.get(host_lease_key(host))
        if held is None or not held.lease:
            self.reports.pop(index, None)
            return
        ttl = store.time_to_live(held.lease)
        if ttl is None or ttl <= 0:
            self.reports.pop(index, None)
            return
        self.reports[index] = LeaseReport(held.lease, echo, ttl)
