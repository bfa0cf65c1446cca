"""The lab tests replay scenario files on real namespace clusters: root only, minutes each.

They carry the ``lab`` marker (``pytest -m lab`` selects them; the default run leaves them out,
see pyproject.toml) and skip, saying why, when not run as root or when the machine lacks what
the lab needs.
"""

from __future__ import annotations

import pytest

from ringfence.lab import netns


@pytest.fixture
def lab_machine() -> None:
    from ringfence.lab.runner import check_machine

    problems = check_machine()
    if problems:
        pytest.skip("; ".join(problems))


@pytest.fixture
def no_new_namespaces(lab_machine: None) -> object:
    """Every namespace a test's lab made is gone afterwards (the lab tears down)."""
    before = set(netns.names())
    yield None
    leftover = sorted(set(netns.names()) - before)
    assert not leftover, f"namespaces left behind: {leftover}"
