"""A forced start without quorum goes to the local agent at once when the agent's own journal
says it has no quorum: the command does not first wait out the store's deadline for a refusal
it can foresee. Found in the lab (004-two-operators-force-start, December): alice's forced
start was carried out 3.7 s after her request, 1.5 s of it the command waiting for the store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ringfence import operator
from ringfence.config import ClusterConfig
from ringfence.operator import agent_without_quorum, force_start

CONFIG = ClusterConfig.model_validate({
    "networks": [{"name": "ring0", "role": "heartbeat"}],
    "hosts": [{"name": h, "cpus": 8, "memory": "16GiB"} for h in ("node0", "node1")],
    "vms": [{"name": "app", "cpus": 1, "memory": "1GiB"}],
})


def journal(state_dir: Path, host: str, *entries: dict[str, object]) -> Path:
    path = state_dir / f"journal-{host}.jsonl"
    with path.open("a") as out:
        for entry in entries:
            out.write(json.dumps({"v": 2, "by": host, "host": host, **entry}) + "\n")
    return path


def test_the_latest_quorum_event_of_the_hosts_own_journal_decides(tmp_path: Path) -> None:
    assert agent_without_quorum(tmp_path, "node0") is None  # no journal: ask the store
    journal(tmp_path, "node0", {"t": 10.0, "kind": "host_joined"},
            {"t": 20.0, "kind": "quorum_lost"})
    assert agent_without_quorum(tmp_path, "node0") == 20.0
    journal(tmp_path, "node0", {"t": 21.0, "kind": "heartbeat_lost", "host": "node1"},
            {"t": 22.0, "kind": "quorum_gained", "host": "node1"})  # another host's
    assert agent_without_quorum(tmp_path, "node0") == 20.0
    journal(tmp_path, "node0", {"t": 30.0, "kind": "quorum_gained"})
    assert agent_without_quorum(tmp_path, "node0") is None
    journal(tmp_path, "node0", {"t": 40.0, "kind": "waiting_for_quorum"})
    with (tmp_path / "journal-node0.jsonl").open("a") as out:
        out.write('{"t": 41.0, "kind": "ho')  # torn: the agent writing it
    assert agent_without_quorum(tmp_path, "node0") == 40.0
    journal(tmp_path, "node0", {"t": 50.0, "kind": "failsafe_left", "cause": "broken"})
    assert agent_without_quorum(tmp_path, "node0") == 40.0
    journal(tmp_path, "node0", {"t": 60.0, "kind": "host_shutdown"})
    assert agent_without_quorum(tmp_path, "node0") is None  # stopped since: unknown, ask


class NoStore:
    """A store that must not be asked."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the store was asked ({name}) although the agent has no quorum")


def test_a_forced_start_goes_straight_to_an_agent_without_quorum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(operator, "_open", lambda path: (CONFIG, NoStore()))
    path = journal(tmp_path, "node0", {"t": time.time() - 30, "kind": "waiting_for_quorum"})

    def agent() -> None:  # node0's agent: takes the request from its inbox and answers
        request = tmp_path / "requests" / "force-app.json"
        while not request.exists():
            time.sleep(0.02)
        asked = json.loads(request.read_text())
        request.unlink()
        journal(tmp_path, "node0", {"t": time.time(), "kind": "force_start", "vm": asked["vm"],
                                    "text": f"app forced on node0 by {asked['operator']}"})

    answering = threading.Thread(target=agent)
    answering.start()
    rc = force_start(None, "app", "node0", ["node1"], "alice", tmp_path)
    answering.join()
    assert rc == 0
    said = capsys.readouterr()
    assert "no store quorum since" in said.out + said.err
    assert "app forced on node0 by alice" in said.out + said.err
    assert path.exists()


def test_unknown_names_are_still_refused_without_asking_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ringfence.errors import ConfigError

    monkeypatch.setattr(operator, "_open", lambda path: (CONFIG, NoStore()))
    journal(tmp_path, "node0", {"t": time.time(), "kind": "quorum_lost"})
    with pytest.raises(ConfigError, match="node9"):
        force_start(None, "app", "node0", ["node9"], "alice", tmp_path)
    assert not (tmp_path / "requests").exists()


def test_the_agent_takes_each_request_of_its_inbox_once_in_order(tmp_path: Path) -> None:
    from ringfence.agent.runtime import OperatorInbox

    _operator_requests = OperatorInbox(tmp_path).take
    assert _operator_requests() == []  # an empty inbox, made by the agent
    inbox = tmp_path / "requests"
    assert inbox.is_dir()
    for name, vm in (("force-b.json", "b"), ("force-a.json", "a"), ("force-.json", "")):
        (inbox / name).write_text(json.dumps({"vm": vm}))
    (inbox / "force-c.json.tmp").write_text("{}")  # not (yet) a request
    (inbox / "other.json").write_text("{}")
    (inbox / "force-broken.json").write_text("{")
    taken = _operator_requests()
    assert [request["vm"] for request in taken] == ["", "a", "b"]  # the broken one: dropped
    assert sorted(p.name for p in inbox.iterdir()) == ["force-c.json.tmp", "other.json"]
    assert _operator_requests() == []
    # A request renamed into place later is taken, however soon after the last look.
    (inbox / "force-d.tmp").write_text(json.dumps({"vm": "d"}))
    (inbox / "force-d.tmp").rename(inbox / "force-d.json")
    assert [request["vm"] for request in _operator_requests()] == ["d"]
