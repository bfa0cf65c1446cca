"""The `Hypervisor` protocol: how an agent starts, stops, migrates and lists VMs on its own
host.

Every action carries the VM's fencing token (the `mod_revision` of its owner key in the store).
A driver that supports it passes the token on to storage fencing (for example as the
reservation key), so that a host holding a stale token can not write even if it resumes.

Long actions are jobs, never calls that block the agent's cycle (Proxmox's LRM runs resource
commands in workers for the same reason): `start`, `stop` and `migrate` return a
`HypervisorJob` at once, which the agent polls on later cycles; a live migration may take
minutes, during which the agent keeps heartbeating, renewing its lease and petting its
watchdog. `list_running` and `destroy` are short and bounded and are called directly.

Failure semantics: `list_running` is the ground truth the agent reconciles against, and the
agent re-lists after any error rather than trusting its own bookkeeping; it raises
`HypervisorError` when the hypervisor can not be asked. A job reports `JobResult(ok=False)`
when the action could not be carried out or its outcome is unknown. `destroy` raises only
when the VM may still be running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class HypervisorError(Exception):
    """The hypervisor did not do what was asked, or could not say whether it did."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """How a job ended. `ok`: the action was done (for `migrate`: the VM runs on the target
    and no longer here). `detail`: what happened, for the journal. `downtime`: for a live
    migration whose driver measured it, how long the guest was paused (seconds)."""

    ok: bool
    detail: str = ""
    downtime: float | None = None


class HypervisorJob(Protocol):
    def result(self) -> JobResult | None:
        """None while the action runs; then how it ended (stable once returned)."""
        ...

    def cancel(self) -> None:
        """Give the action up; never blocks. A migration is aborted (the VM then stays on
        the source, unless the switchover already happened); a start that completes anyway
        is undone by the driver. `result` reports what finally happened."""
        ...


class Hypervisor(Protocol):
    def list_running(self) -> dict[str, int]:
        """VMs this host's hypervisor is running (or has paused), with the token each was
        started with. Bounded. Raises HypervisorError if the hypervisor can not be asked."""
        ...

    def start(self, vm: str, token: int) -> HypervisorJob:
        """Start `vm` under fencing token `token` (idempotent for the same token; a running
        VM takes the new token). Never raises: failures are reported by the job."""
        ...

    def stop(self, vm: str, token: int) -> HypervisorJob:
        """Stop `vm` cleanly: guest shutdown, then destroy after the driver's grace time.
        Never raises: failures are reported by the job."""
        ...

    def migrate(self, vm: str, target: str, token: int) -> HypervisorJob:
        """Live-migrate running `vm` to host `target`, where it continues under `token`.
        When the job ends ok the VM runs on `target` and no longer here. When it fails the
        VM still runs here (the driver aborts cleanly) or, if that can not be known, the
        caller treats it as possibly running in both places and stops it here. Never raises."""
        ...

    def destroy(self, vm: str) -> None:
        """Pull the plug on `vm` at once (self-fence). Bounded. Destroying a VM that does
        not run is not an error. Raises HypervisorError only when the VM may still run."""
        ...
