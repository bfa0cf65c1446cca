"""The fence agent runner against tests/fixtures/fence_fake, a fake ClusterLabs agent that
speaks the same stdin protocol and keeps its power state in a file."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from ringfence.config import FenceConfig
from ringfence.fence.runner import FenceAgentRunner

FAKE = Path(__file__).resolve().parent.parent / "fixtures" / "fence_fake"
WAIT = 20.0  # bound on waiting for a result (each runner has its own, shorter timeout)


def runner(tmp_path: Path, *, timeout: float = 5.0, retries: int = 1,
           **params: Any) -> FenceAgentRunner:
    return FenceAgentRunner("hv2", str(FAKE), {"state_file": str(tmp_path / "power"), **params},
                            timeout=timeout, retries=retries, poll_interval=0.1)


def power(tmp_path: Path) -> str:
    path = tmp_path / "power"
    return path.read_text().strip() if path.exists() else "on"


def test_off_is_confirmed_by_status(tmp_path: Path) -> None:
    handle = runner(tmp_path, ip="10.9.0.2", username="admin", lanplus=True).fence("hv2", "off")
    result = handle.wait(WAIT)
    assert result is not None and result.ok, result
    assert "status reported off" in result.detail
    assert power(tmp_path) == "off"
    assert handle.result() == result  # stable once returned


def test_result_is_none_while_running_and_fence_does_not_block(tmp_path: Path) -> None:
    started = time.monotonic()
    handle = runner(tmp_path, delay=0.5).fence("hv2", "off")
    returned = time.monotonic() - started
    assert handle.result() is None
    result = handle.wait(WAIT)
    assert result is not None and result.ok
    assert returned < time.monotonic() - started  # fence() came back before the work was done


def test_reboot_reports_once_off_then_powers_on(tmp_path: Path) -> None:
    log = tmp_path / "log"
    handle = runner(tmp_path, log_file=str(log)).fence("hv2", "reboot")
    result = handle.wait(WAIT)
    assert result is not None and result.ok
    deadline = time.monotonic() + WAIT
    while handle.power_on is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert handle.power_on is not None and handle.power_on.ok
    assert power(tmp_path) == "on"
    actions = [line.split()[0] for line in log.read_text().splitlines()]
    assert actions[0] == "off" and "status" in actions and actions[-1] == "on"


def test_agent_failure_reports_stderr_tail(tmp_path: Path) -> None:
    result = runner(tmp_path, retries=1, fail=1).fence("hv2", "off").wait(WAIT)
    assert result is not None and not result.ok
    assert "Unable to connect/login" in result.detail
    assert "attempt 2" in result.detail  # retried once


def test_retries_recover_from_a_failed_off(tmp_path: Path) -> None:
    result = runner(tmp_path, retries=2, fail_off=1).fence("hv2", "off").wait(WAIT)
    assert result is not None and result.ok, result
    assert "attempt 2" in result.detail


def test_off_that_does_not_take_is_a_failure(tmp_path: Path) -> None:
    result = runner(tmp_path, timeout=1.5, retries=1, stuck_on=1).fence("hv2", "off").wait(WAIT)
    assert result is not None and not result.ok
    assert "still on" in result.detail
    assert power(tmp_path) == "on"


def test_hanging_agent_is_killed_at_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    result = runner(tmp_path, timeout=1.0, delay=30).fence("hv2", "off").wait(WAIT)
    assert result is not None and not result.ok
    assert "timed out" in result.detail
    assert time.monotonic() - started < WAIT  # bounded, not the agent's 30 s


def test_password_file_is_sent_and_never_shown(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "ipmi-pw"
    secret.write_text("s3cr3t-pw\n")
    log = tmp_path / "log"
    caplog.set_level(logging.DEBUG, logger="ringfence.fence")
    ok = runner(tmp_path, password_file=str(secret), expect_password="s3cr3t-pw",
                log_file=str(log)).fence("hv2", "off").wait(WAIT)
    assert ok is not None and ok.ok, ok
    assert "password=yes" in log.read_text()
    (tmp_path / "power").unlink()
    bad = runner(tmp_path, retries=0, password_file=str(secret),
                 expect_password="other").fence("hv2", "off").wait(WAIT)
    assert bad is not None and not bad.ok
    assert "login failed" in bad.detail
    assert "s3cr3t-pw" not in bad.detail and "****" in bad.detail  # the agent quoted it
    assert "s3cr3t-pw" not in caplog.text


@pytest.mark.parametrize(("make", "why"), [
    (lambda tmp: FenceAgentRunner("hv2", "fence_does_not_exist_here", {}, timeout=2,
                                  retries=0), "can not run fence agent"),
    (lambda tmp: FenceAgentRunner("hv2", str(FAKE), {"password_file": str(tmp / "none")},
                                  timeout=2, retries=0), "can not read password_file"),
    (lambda tmp: FenceAgentRunner("hv2", "bin/fence_x", {}, timeout=2, retries=0),
     "absolute path"),
    (lambda tmp: FenceAgentRunner("hv2", str(FAKE), {"ip": "a\nb"}, timeout=2, retries=0),
     "line break"),
])
def test_misconfiguration_is_a_failed_result_not_an_exception(tmp_path: Path, make: Any,
                                                              why: str) -> None:
    result = make(tmp_path).fence("hv2", "off").wait(WAIT)
    assert result is not None and not result.ok
    assert why in result.detail


def test_wrong_host_is_refused(tmp_path: Path) -> None:
    result = runner(tmp_path).fence("hv9", "off").result()
    assert result is not None and not result.ok and "configured for hv2" in result.detail
    assert power(tmp_path) == "on"


def test_from_config(tmp_path: Path) -> None:
    config = FenceConfig(agent=str(FAKE), params={"state_file": str(tmp_path / "power")})
    agent = FenceAgentRunner.from_config("hv2", config, timeout=5, retries=0)
    assert agent.executable == FAKE
    assert FenceAgentRunner("h", "fence_ipmilan", {}, timeout=1, retries=0).executable == \
        Path("/usr/sbin/fence_ipmilan")
    result = agent.fence("hv2", "off").wait(WAIT)
    assert result is not None and result.ok


def _no_process_mentions(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in args and state not in ("Z", "X"):
            return False
    return True


@pytest.mark.parametrize("knob", ["delay", "child_delay"])
def test_a_hung_agent_is_stopped_before_it_counts_as_failed_and_never_acts_later(
        tmp_path: Path, knob: str) -> None:
    # Issue 9, case 3: an agent that answers after 60 s with a 30 s timeout power-cycled its
    # host after the host had come back. Here: answers after 4 s, timeout 1.5 s; with
    # `child_delay` the acting process has even left the agent's process group.
    marker = str(tmp_path / "power")
    handle = runner(tmp_path, timeout=1.5, retries=0, **{knob: 4}).fence("hv2", "off")
    result = handle.wait(WAIT)
    assert result is not None and not result.ok
    assert _no_process_mentions(marker), "the failed fence left a process behind"
    time.sleep(4.5)
    assert power(tmp_path) == "on", "the failed fence acted later"


def test_a_cancelled_fence_is_stopped_and_never_acts(tmp_path: Path) -> None:
    # The manager gives up on a fence that has not answered once the watchdog proof is
    # complete: it cancels it, and only a confirmed stop counts as the end.
    marker = str(tmp_path / "power")
    handle = runner(tmp_path, timeout=30.0, retries=0, child_delay=3).fence("hv2", "off")
    time.sleep(0.5)
    assert handle.result() is None
    handle.cancel()
    result = handle.wait(WAIT)
    assert result is not None and not result.ok and "stopped" in result.detail
    assert _no_process_mentions(marker)
    time.sleep(3.5)
    assert power(tmp_path) == "on"


def test_status_is_polled_soon_after_off_then_every_poll_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that is off a moment after its `off` is confirmed within that moment, not a
    whole poll interval later (in the lab a fence took 1.6 s, most of it one 1 s wait)."""
    import types

    from ringfence.fence import runner as module

    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(round(seconds, 3))
        time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=time.monotonic,
                                                              sleep=sleep))
    log = tmp_path / "log"
    slow = FenceAgentRunner("hv2", str(FAKE), {"state_file": str(tmp_path / "power"),
                                               "on_for": 5, "log_file": str(log)},
                            timeout=60.0, retries=0, poll_interval=1.0)
    result = slow.fence("hv2", "off").wait(WAIT)
    assert result is not None and result.ok, result
    statuses = [line for line in log.read_text().splitlines() if line.startswith("status")]
    assert len(statuses) == 6  # five "still on", then off
    assert waited == [0.1, 0.25, 0.5, 1.0, 1.0]


def test_on_done_is_called_once_the_result_is_known(tmp_path: Path) -> None:
    # The runtime passes its Nudge here, so the decision cycle polls the handle at once.
    seen: list[object] = []
    agent = FenceAgentRunner("hv2", str(FAKE), {"state_file": str(tmp_path / "power")},
                             timeout=5.0, retries=0, poll_interval=0.1,
                             on_done=lambda: seen.append(handle.result()))
    handle = agent.fence("hv2", "off")
    result = handle.wait(WAIT)
    assert result is not None and result.ok
    assert seen == [result]  # called once, with the result already in place


def test_on_done_is_called_for_a_fence_that_can_not_start(tmp_path: Path) -> None:
    calls: list[int] = []
    agent = FenceAgentRunner("hv2", str(FAKE), {}, timeout=5.0, retries=0,
                             on_done=lambda: calls.append(1))
    handle = agent.fence("hv3", "off")  # not the host this agent fences
    result = handle.result()
    assert result is not None and not result.ok
    assert calls == [1]
