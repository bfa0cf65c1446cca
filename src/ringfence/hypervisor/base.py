"""The `Hypervisor` protocol: how an agent starts, stops and lists VMs on its own host.

Every action carries the VM's fencing token (the `mod_revision` of its owner key in the store).
A driver that supports it passes the token on to storage fencing (for example as the
reservation key), so that a host holding a stale token can not write even if it resumes.

Failure semantics: a method raises `HypervisorError` when the action could not be carried out
or its outcome is unknown; `list_running` is the ground truth the agent reconciles against,
and the agent re-lists after any error rather than trusting its own bookkeeping.
"""

from __future__ import annotations

from typing import Protocol


class HypervisorError(Exception):
    """The hypervisor did not do what was asked, or could not say whether it did."""


class Hypervisor(Protocol):
    def list_running(self) -> dict[str, int]:
        """VMs this host's hypervisor is running (or has paused), with the token each was
        started with. Raises HypervisorError if the hypervisor can not be asked."""
        ...

    def start(self, vm: str, token: int) -> None:
        """Start `vm` under fencing token `token`. Idempotent for the same token.
        Raises HypervisorError."""
        ...

    def stop(self, vm: str, token: int) -> None:
        """Stop `vm` cleanly (guest shutdown, then destroy after the driver's grace time).
        Raises HypervisorError."""
        ...

    def migrate(self, vm: str, target: str, token: int) -> None:
        """Live-migrate running `vm` to host `target`, where it continues under `token`.
        When this returns the VM runs on `target` and no longer here. Raises HypervisorError
        if the migration failed; the VM then still runs here (the driver aborts cleanly) or,
        if that can not be known, the caller must treat it as possibly running in both places
        and stop it here."""
        ...

    def destroy(self, vm: str) -> None:
        """Pull the plug on `vm` at once (self-fence). Destroying a VM that does not run is
        not an error. Raises HypervisorError only when the VM may still be running."""
        ...
