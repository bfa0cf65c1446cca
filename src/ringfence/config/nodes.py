"""Networks and the machines on them: hosts (which run VMs) and witnesses (which do not).

Field validators normalise single values (a role given as one string becomes a list; MAC
addresses become lower case with colons) and raise :class:`ValueError` for bad ones. Whether the
networks a host names exist is checked by :class:`~ringfence.config.cluster.ClusterConfig`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, field_validator

from ringfence.config.fields import (
    _MAC,
    MAX_DATASTORES,
    MAX_NETWORKS,
    Hypervisor,
    IPAddress,
    Name,
    NetworkRole,
    _Model,
)
from ringfence.units import Size, size_range


class Network(_Model):
    """A network; ``role`` may be one role or a list of roles."""

    name: Name
    role: list[NetworkRole] = Field(max_length=8)
    port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("role", mode="before")
    @classmethod
    def _role_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("role")
    @classmethod
    def _role_not_empty(cls, value: list[NetworkRole]) -> list[NetworkRole]:
        if not value:
            raise ValueError("give at least one role: heartbeat, vm, storage or management")
        return list(dict.fromkeys(value))


class Interface(_Model):
    """A host's NIC on one network. Identity is the MAC; the name is only a hint."""

    mac: str | None = None
    address: IPAddress | None = None
    name: Annotated[str, Field(min_length=1, max_length=15)] | None = None  # Linux: IFNAMSIZ

    @field_validator("mac")
    @classmethod
    def _normalise_mac(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _MAC.fullmatch(value):
            raise ValueError(
                f"expected a MAC address such as 52:54:00:12:34:56, got {value[:80]!r}"
            )
        return value.lower().replace("-", ":")


def _network_names(
    explicit: list[str], implied: Iterable[str], all_networks: list[str]
) -> list[str]:
    if explicit:
        return list(explicit)
    implied_list = list(implied)
    if implied_list:
        return implied_list
    return list(all_networks)


class Host(_Model):
    """A machine that runs VMs."""

    name: Name
    cpus: int = Field(ge=1, le=4096)
    memory: Annotated[Size, size_range(1 << 20, 64 << 40)]
    networks: list[str] = Field(default_factory=list, max_length=MAX_NETWORKS)
    datastores: list[str] = Field(default_factory=list, max_length=MAX_DATASTORES)
    hypervisor: Hypervisor | None = None
    interfaces: dict[str, Interface] = Field(default_factory=dict, max_length=MAX_NETWORKS)

    def network_names(self, all_networks: list[str]) -> list[str]:
        """Networks the host is on: ``networks`` if given, else its interfaces, else all."""
        return _network_names(self.networks, self.interfaces, all_networks)


class Witness(_Model):
    """A store member that runs no VMs (a "quorum server")."""

    name: Name
    networks: list[str] = Field(default_factory=list, max_length=MAX_NETWORKS)
    address: IPAddress | None = None

    def network_names(self, all_networks: list[str]) -> list[str]:
        """Networks the witness is on: ``networks`` if given, else all."""
        return _network_names(self.networks, (), all_networks)
