"""Taking the leadership over on evidence (issue 17): when the leader dies with its host, a
survivor leads at once instead of waiting for the manager key that the store's election
restarted; a host that hears nobody never takes the leadership from a leader the others hear."""

from __future__ import annotations

import pytest

from conftest import SCENARIOS
from ringfence.core.membership import Membership
from ringfence.sim.runner import simulate
from ringfence.sim.scenario import load_scenario

LEADER_DIES = SCENARIOS / "leader-dies-with-its-host.yaml"
CUT_OFF = SCENARIOS / "cut-off-host-does-not-take-the-leadership.yaml"


def test_a_dead_leader_is_replaced_as_fast_as_it_is_detected() -> None:
    result = simulate(load_scenario(LEADER_DIES))
    assert result.passed, [o.detail for o in result.outcomes if not o.passed]
    taken = [e for e in result.world.entries if e.kind == "manager_elected"
             and e.fact.peer == "host1"]
    assert taken and taken[0].t < 21.5, [(e.t, e.text) for e in taken]


def test_a_host_cut_off_from_everyone_keeps_its_hands_off_the_leadership() -> None:
    result = simulate(load_scenario(CUT_OFF))
    assert result.passed, [o.detail for o in result.outcomes if not o.passed]


def test_without_a_second_witness_of_the_silence_it_would_take_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The rule that a successor must hear some other host is what keeps host3, deaf to
    # everyone, from deposing the leader that host2 still hears.
    monkeypatch.setattr(Membership, "others_heard", lambda self, excluding: 1)
    result = simulate(load_scenario(CUT_OFF))
    assert any(e.kind == "manager_elected" and e.host == "host3"
               for e in result.world.entries)
