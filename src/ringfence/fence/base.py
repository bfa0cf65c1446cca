"""Protocols for the two ways a host is proven not to run VMs: fence agents and the watchdog.

`FenceAgent`: acts on another host out of band (IPMI, Redfish, a PDU, a hypervisor's API).
Operations take seconds, so `off` returns a handle that the manager polls once per cycle; it
never blocks a decision cycle. An operation that times out or errs is a *failed* fence: the
host is not proven off, and the manager falls back to the watchdog path, loudly. A fence that
has not answered is stopped (`FenceHandle.cancel`) before it counts as failed, so that it can
never power a host off after the host came back. Unreachable device: a failed result with
the agent's own words, after at most the runner's timeout.

`Watchdog`: a hardware (or supervising process) timer that resets this host unless petted
within its timeout. It is armed once and then petted only after a fresh store renewal (the
Patroni rule); stopping the petting is how a host that lost its lease guarantees that it stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class FenceResult:
    """How a fence operation ended. `ok` means the target was confirmed off (a `status`
    check after `off` reported off)."""

    ok: bool
    detail: str


class FenceHandle(Protocol):
    def result(self) -> FenceResult | None:
        """None while the operation runs; then its result (stable once returned)."""
        ...

    def cancel(self) -> None:
        """Stop the operation; never blocks. The agent is stopped for good (it will not act
        later), and `result` then reports a failure once that is certain — or the success
        that was reported before. Cancelling a finished operation changes nothing."""
        ...


class FenceAgent(Protocol):
    def fence(self, host: str, action: Literal["off", "reboot"]) -> FenceHandle:
        """Start fencing `host`. With `reboot`, the result is reported as soon as the host is
        confirmed off; powering it on again follows and needs no confirmation. Never raises:
        failures are reported through the handle."""
        ...


class Watchdog(Protocol):
    def arm(self, timeout: float) -> None:
        """Open the watchdog with `timeout` seconds. Raises OSError if it can not be armed."""
        ...

    def pet(self) -> None:
        """Restart the watchdog's countdown."""
        ...

    def disarm(self) -> None:
        """Close the watchdog cleanly (magic close): only on a clean shutdown with no VMs."""
        ...
