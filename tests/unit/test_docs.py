"""The documentation must not silently fall behind the code.

docs/scenarios.md ends with a library index that lists every file in scenarios/, and documents
every journal event kind of `core.events.EVENT_KINDS`. These tests fail when a scenario is added,
renamed or removed, or an event kind is added or removed, without the page being updated.
"""

from __future__ import annotations

import re
from pathlib import Path

from ringfence.core.events import EVENT_KINDS

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
PAGE = ROOT / "docs" / "scenarios.md"


def _section(text: str, heading: str) -> str:
    """The body of the level-2 section `heading`, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"docs/scenarios.md has no '## {heading}' section"
    return match.group(1)


def _index_files() -> list[str]:
    """File names in the first column of the library index table, in page order."""
    index = _section(PAGE.read_text(encoding="utf-8"), "Library index")
    return re.findall(r"^\| \[([^\]]+\.yaml)\]\(\.\./scenarios/\1\)", index, re.M)


def test_library_index_lists_every_scenario_file() -> None:
    files = sorted(path.name for path in SCENARIOS.glob("*.yaml"))
    assert files, "no scenario files found"
    missing = sorted(set(files) - set(_index_files()))
    assert not missing, f"docs/scenarios.md's library index does not list: {', '.join(missing)}"


def test_library_index_lists_only_existing_files_sorted_once() -> None:
    listed = _index_files()
    files = {path.name for path in SCENARIOS.glob("*.yaml")}
    stale = sorted(set(listed) - files)
    assert not stale, f"the library index lists files that do not exist: {', '.join(stale)}"
    assert len(listed) == len(set(listed)), "the library index lists a file twice"
    assert listed == sorted(listed), "the library index is not sorted by file name"


def test_every_event_kind_is_documented() -> None:
    text = PAGE.read_text(encoding="utf-8")
    missing = sorted(kind for kind in EVENT_KINDS if f"`{kind}`" not in text)
    assert not missing, f"docs/scenarios.md does not document event kinds: {', '.join(missing)}"


def test_event_kind_tables_name_only_existing_kinds() -> None:
    tables = _section(PAGE.read_text(encoding="utf-8"), "Journal event kinds")
    documented = re.findall(r"^\| `([a-z_]+)` \|", tables, re.M)
    assert documented, "no event kind rows found under '## Journal event kinds'"
    unknown = sorted(set(documented) - set(EVENT_KINDS))
    assert not unknown, f"docs/scenarios.md documents event kinds that do not exist: {unknown}"
    assert sorted(set(EVENT_KINDS) - set(documented)) == [], (
        "an event kind is missing from the tables under '## Journal event kinds'")
