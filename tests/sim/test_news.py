"""`Agent.take_news`: the heartbeat cycle tells the runtime that a peer changed state, so that
the real runtime runs the decision cycle at once (`agent.wakeup`). Simulated time."""

from __future__ import annotations

from conftest import SCENARIOS
from ringfence.sim.scenario import load_scenario
from ringfence.sim.world import World

POWER_LOSS = SCENARIOS / "host-power-loss-power-fence.yaml"  # host3 powers off at 20 s


def test_a_lost_peer_is_news_once_and_a_quiet_cluster_is_not() -> None:
    world = World(load_scenario(POWER_LOSS), 1)
    said: dict[float, bool] = {}

    def ask(t: float) -> None:
        agent = world.hosts["host1"].agent
        assert agent is not None
        said[t] = agent.take_news()

    for t in (19.0, 19.9, 21.5, 21.55):
        world.at(t, lambda t=t: ask(t))  # type: ignore[misc]
    world.run(22.0)
    assert not said[19.9], "nothing changed since 19 s, yet the agent says there is news"
    assert said[21.5], "host3 was lost, and the agent did not say so"
    assert not said[21.55], "news is used up once taken"
