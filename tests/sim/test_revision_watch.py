"""`Agent.revision` with a store watch (`AgentParts.store_watch`): the decision cycle asks the
store only when the watch tells of a newer revision, or when its last read is
`REVISION_REFRESH` old, and at every cycle while the watch follows nothing. Simulated time."""

from __future__ import annotations

from typing import Any

from conftest import SCENARIOS
from ringfence.core.agent import REVISION_REFRESH, Agent
from ringfence.sim.scenario import load_scenario
from ringfence.sim.world import World

QUIET = SCENARIOS / "host-power-loss-power-fence.yaml"  # nothing happens before 20 s


class FakeWatch:
    def __init__(self) -> None:
        self.value: int | None = None

    def seen(self) -> int | None:
        return self.value


def test_the_watch_decides_when_the_cycle_asks_the_store() -> None:
    world = World(load_scenario(QUIET), 1)
    watch = FakeWatch()
    asked: list[float] = []
    state: dict[str, Any] = {}

    def install() -> None:
        agent = world.hosts["host1"].agent
        assert isinstance(agent, Agent) and agent.revision_seen is not None
        state["agent"] = agent
        inner = agent.store.revision

        def counted() -> int:
            asked.append(world.now)
            return inner()

        agent.store.revision = counted  # type: ignore[method-assign]
        agent.parts.store_watch = watch
        watch.value = agent.revision_seen.revision  # "nothing newer than your last read"

    def newer() -> None:
        watch.value = 10**9

    def lost() -> None:
        watch.value = None

    world.at(10.0, install)
    world.at(14.0, newer)  # another host wrote: every cycle asks until it has read it
    world.at(16.0, lost)  # the stream is gone: every cycle asks
    world.run(18.0)
    quiet = [t for t in asked if 10.0 < t < 14.0]
    # Five cycles a second for 4 s; with the watch vouching, one read per REVISION_REFRESH.
    assert 1 <= len(quiet) <= 4.0 / REVISION_REFRESH + 1, quiet
    assert len([t for t in asked if 14.0 < t < 16.0]) >= 9  # the watch's newer revision
    assert len([t for t in asked if 16.0 < t < 18.0]) >= 9  # no watch: at every cycle
