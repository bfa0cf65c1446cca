"""How fresh a host's news of the store is (`core.failsafe`): a heartbeat's "reaches the store"
counts for a host whose lease went stale only when the sender's store answered it lately, and
for a host in failsafe once that peer had fresh news during it. Found by CI's lab run
(scenario failsafe-stale-claim-of-the-store): a peer's renewal still waiting on a leaderless
store made a host self-fence, then the peer."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from conftest import SCENARIOS
from ringfence.config import Timing
from ringfence.core import agent as agent_module
from ringfence.core.failsafe import failsafe_view, has_fresh_news, store_news_window
from ringfence.core.membership import Membership
from ringfence.core.ports import (
    FLAG_FAILSAFE,
    FLAG_SAYS_FRESHNESS,
    FLAG_STORE_FRESH,
    FLAG_STORE_OK,
    HeartbeatBatch,
)
from ringfence.core.topology import Topology
from ringfence.sim.runner import simulate
from ringfence.sim.scenario import load_scenario
from ringfence.sim.store import SimStore, SimStoreClient
from ringfence.store.base import StoreUnavailable
from ringfence.store.identity import IdentifiedStore, IdentityRef

NEW_OK = FLAG_SAYS_FRESHNESS | FLAG_STORE_OK


def test_only_an_answer_lately_is_fresh_news() -> None:
    assert has_fresh_news(NEW_OK | FLAG_STORE_FRESH)
    assert not has_fresh_news(NEW_OK)  # still waiting on its call: old news
    assert not has_fresh_news(FLAG_SAYS_FRESHNESS | FLAG_STORE_FRESH)  # lost it since
    assert not has_fresh_news(FLAG_SAYS_FRESHNESS)
    # An agent of an older version never says how fresh: its "reaches" is taken as it meant.
    assert has_fresh_news(FLAG_STORE_OK)
    assert has_fresh_news(FLAG_STORE_OK | FLAG_FAILSAFE)


def test_the_window_ends_before_an_out_of_phase_peer_is_stale() -> None:
    timing = Timing()
    window = store_news_window(timing)
    renewal = timing.host_lease_ttl / 3
    # A peer that renewed a whole renewal interval after us, and whose news takes two
    # heartbeats to arrive, no longer says "fresh" when our lease goes stale...
    assert renewal + window + 2 * timing.heartbeat_interval <= \
        timing.host_lease_ttl - timing.safety_margin + 1e-9
    # ...and a peer whose store answers its renewals says "fresh" between them.
    assert window > renewal
    # Never shorter than the time within which a host in failsafe must hear it.
    slow = Timing(heartbeat_interval=1.0, host_lease_ttl=9.0, watchdog_timeout=5.0)
    assert store_news_window(slow) >= slow.effective_heartbeat_timeout + 1.0


def _membership(flags: dict[str, int]) -> Membership:
    names = ("h1", "h2", "h3")
    topology = Topology(names, ("ring0",), np.ones((3, 1), dtype=np.bool_))
    membership = Membership(topology, "h1", 1.0)
    n = len(names)
    batch = HeartbeatBatch(np.full((n, 1), 10.0), np.ones((n, n), dtype=np.bool_),
                           np.ones(n, dtype=np.bool_),
                           np.array([flags.get(h, 0) for h in names], dtype=np.int64),
                           np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64))
    membership.observe(10.0, batch)
    assert membership.hears("h2") and membership.hears("h3")
    return membership


def test_a_stale_host_counts_a_peer_as_back_only_on_fresh_news() -> None:
    hosts = ["h1", "h2", "h3"]
    waiting = _membership({"h2": NEW_OK, "h3": FLAG_SAYS_FRESHNESS})
    assert failsafe_view(waiting, hosts, "h1", set()).back == ()
    fresh = _membership({"h2": NEW_OK | FLAG_STORE_FRESH, "h3": FLAG_SAYS_FRESHNESS})
    assert failsafe_view(fresh, hosts, "h1", set()).back == ("h2",)


def test_in_failsafe_a_peer_once_fresh_counts_on_its_flag_alone() -> None:
    hosts = ["h1", "h2", "h3"]
    waiting = _membership({"h2": NEW_OK, "h3": FLAG_SAYS_FRESHNESS})
    assert failsafe_view(waiting, hosts, "h1", set(), set()).back == ()
    # h2 had fresh news earlier in this failsafe: a slow call since does not make it forget.
    assert failsafe_view(waiting, hosts, "h1", set(), {"h2"}).back == ("h2",)
    # A peer that lost the store since is not back, whatever it said before.
    lost = _membership({"h2": FLAG_SAYS_FRESHNESS, "h3": FLAG_SAYS_FRESHNESS})
    assert failsafe_view(lost, hosts, "h1", set(), {"h2"}).back == ()


class _World:
    def __init__(self) -> None:
        self.now = 0.0
        self.reachable = True

    def store_reachable(self, host: str) -> bool:
        return self.reachable


def test_the_store_keeps_when_its_newest_answered_call_was_sent() -> None:
    world = _World()
    clock = iter([1.0, 2.0, 3.0])
    store = IdentifiedStore(SimStoreClient(cast(Any, world), SimStore(election_time=0.0), "h1"),
                            IdentityRef(), clock=lambda: next(clock))
    assert store.answered is None
    store.revision()
    assert store.answered == 1.0
    world.reachable = False
    with pytest.raises(StoreUnavailable):
        store.revision()
    assert store.answered == 1.0  # a call that raised is no answer
    world.reachable = True
    store.get("x")
    assert store.answered == 3.0


def test_old_news_of_the_store_taken_as_fresh_stops_two_hosts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(SCENARIOS / "failsafe-stale-claim-of-the-store.yaml")
    assert simulate(scenario).passed
    monkeypatch.setattr(agent_module.Agent, "_store_news_fresh", lambda self, now: True)
    result = simulate(scenario)
    assert not result.passed
    assert any(e.kind == "self_fence" and e.host == "nodeB" for e in result.world.entries)
