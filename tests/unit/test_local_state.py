"""FileLocalState: one JSON file per key, written atomically and durably."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.agent.local_state import FileLocalState, LocalStateError


def test_put_get_delete(tmp_path: Path) -> None:
    state = FileLocalState(tmp_path / "local")
    assert state.get("held") is None
    state.put("held", {"vms": {"erp": 12}})
    assert state.get("held") == {"vms": {"erp": 12}}
    state.put("held", {"vms": {}})
    assert state.get("held") == {"vms": {}}
    state.put("held", None)
    assert state.get("held") is None
    state.put("held", None)  # deleting what is not there is fine


def test_keys_with_slashes_and_survival_across_instances(tmp_path: Path) -> None:
    FileLocalState(tmp_path).put("forced/erp", {"operator": "ana", "confirm_down": ["hv2"]})
    FileLocalState(tmp_path).put("../escape", {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["..%2Fescape.json", "forced%2Ferp.json"]
    again = FileLocalState(tmp_path)
    assert again.get("forced/erp") == {"operator": "ana", "confirm_down": ["hv2"]}
    assert again.get("../escape") == {"x": 1}
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_damaged_file_is_an_error_not_a_forgotten_promise(tmp_path: Path) -> None:
    state = FileLocalState(tmp_path)
    state.path("held").write_text("{half")
    with pytest.raises(LocalStateError, match="not JSON"):
        state.get("held")
    state.path("list").write_text("[1, 2]")
    with pytest.raises(LocalStateError, match="not an object"):
        state.get("list")
    with pytest.raises(ValueError):
        state.get("")


def test_put_failure_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "gone"
    broken = FileLocalState(blocker)
    blocker.rmdir()
    blocker.write_text("now a file")  # the state directory is no directory any more
    with pytest.raises(OSError):
        broken.put("k", {"v": 2})
