"""The cluster file: its schema, its cross-checks, and loading it with line numbers.

The models here describe a cluster (networks, hosts, witnesses, store, fencing, datastores,
groups, VMs, policy, alerts, API). Every model forbids unknown fields and is frozen. Field
validators check single values; the ``model_validator`` of :class:`Timing` checks that the timers
are safe together, and the one of :class:`ClusterConfig` checks references between sections
(unknown networks, hosts, VMs, datastores; VMs that do not fit their hosts; hosts without a
heartbeat network).

Errors:

* Constructing a model directly from Python raises :class:`pydantic.ValidationError`; messages of
  the cross-checks name the field path they are about.
* :func:`load_cluster`, :func:`parse_cluster` and :func:`read_yaml` raise
  :class:`ringfence.errors.ConfigError`, one :class:`~ringfence.errors.Problem` per mistake, each
  with the file, the line, the field path in the file's terms (``hosts[1].memory``) and a message
  saying what is expected there. Unreadable files, YAML syntax errors, duplicate keys and a top
  level that is not a mapping are reported the same way.

The YAML reader uses the YAML 1.2 core scalars rather than PyYAML's YAML 1.1 defaults, so that
``on``/``off``/``yes``/``no`` stay strings (``on: true`` is a field of the ``maintenance`` event),
``010`` is ten, and an unquoted MAC address such as ``52:54:00:00:00:01`` is not read as a
base-60 integer. Mapping keys are always strings.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ringfence.alerts.models import Alert  # the alert routes' own module
from ringfence.errors import ConfigError, Problem, describe_value
from ringfence.units import (
    Duration,
    Size,
    duration_range,
    format_duration,
    format_size,
    number_range,
    size_range,
)

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_HOSTS",
    "MAX_VMS",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "VM",
    "Alert",
    "ApiConfig",
    "ApiTLS",
    "ClusterConfig",
    "Datastore",
    "FenceConfig",
    "FieldProblems",
    "Group",
    "Host",
    "Interface",
    "LineMap",
    "Loc",
    "Network",
    "Policy",
    "ProbeConfig",
    "StoreConfig",
    "StoreTLS",
    "Timing",
    "VerifyConfig",
    "Witness",
    "format_path",
    "load_cluster",
    "parse_cluster",
    "parse_yaml",
    "read_yaml",
    "unknown_name",
    "validate_document",
]

Loc = tuple[str | int, ...]
"""A field path as a tuple: ``("hosts", 1, "memory")``."""

LineMap = dict[Loc, int]
"""Line (1-based) of every mapping key and sequence item of a YAML document, by field path."""


class FieldProblems(ValueError):
    """Raised by model validators: one or more problems, each at a path relative to the model.

    The loader turns each into a :class:`~ringfence.errors.Problem` at the model's own path plus
    the relative one, so a cross-check can point at ``hosts[2].networks[0]`` rather than at the
    whole cluster.
    """

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems: list[tuple[Loc, str]] = list(problems)
        super().__init__(
            "; ".join(
                f"{format_path(loc)}: {message}" if loc else message
                for loc, message in self.problems
            )
        )


def format_path(loc: Iterable[str | int]) -> str:
    """Render a field path: ``("hosts", 1, "memory")`` -> ``hosts[1].memory``."""
    out = ""
    for segment in loc:
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            out += f".{segment}" if out else segment
    return out


def unknown_name(kind: str, name: str, known: Sequence[str], plural: str | None = None) -> str:
    """Message for a reference to something that does not exist, listing what does."""
    plural = plural or f"{kind}s"
    known = list(dict.fromkeys(known))
    if not known:
        return f"unknown {kind} {name!r}; the cluster defines no {plural}"
    shown = ", ".join(known[:12]) + (f", … ({len(known) - 12} more)" if len(known) > 12 else "")
    message = f"unknown {kind} {name!r}; known {plural}: {shown}"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


# ----------------------------------------------------------------------------------- bounds
# What is sane, for every input (docs/limits.md explains each figure).

MAX_YAML_BYTES = 16 << 20
"""A cluster or scenario file is at most 16 MiB (20,000 VMs take about 2 MiB)."""
MAX_YAML_DEPTH = 32
"""Mappings and lists nest at most 32 deep (ringfence's own files need 7)."""
MAX_ALIAS_VALUES = 10_000
"""YAML aliases may repeat at most 10,000 values in all (refuses "billion laughs")."""
MAX_HOSTS = 256
"""Hosts per cluster (DESIGN.md: a cluster is bounded by its heartbeat mesh at 256 hosts)."""
MAX_VMS = 20_000
"""VMs per cluster: twice the placement target of 10,000 VMs on 256 hosts."""
MAX_NETWORKS = 16
MAX_WITNESSES = 16
MAX_DATASTORES = 256
MAX_GROUPS = 10_000
MAX_ALERTS = 64
MAX_NAME = 63
MAX_PATH = 4096
MAX_URL = 2048
MAX_TEXT = 4096

FilePath = Annotated[str, Field(min_length=1, max_length=MAX_PATH)]
"""A file or directory name given in a file."""
Text = Annotated[str, Field(max_length=MAX_TEXT)]


# --------------------------------------------------------------------------- shared field types

_NAME_HINT = (
    f"a name must be 1 to {MAX_NAME} characters and contain no spaces, '/' or control characters"
)


def _check_name(value: str) -> str:
    if (
        not value
        or len(value) > MAX_NAME
        or "/" in value
        or any(ch.isspace() or not ch.isprintable() for ch in value)
    ):
        shown = value if len(value) <= 80 else value[:40] + "…"
        raise ValueError(f"invalid name {shown!r}: {_NAME_HINT}")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""The name of a host, witness, VM, network, datastore, group or cluster."""


def _check_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(
            f"expected an IP address such as 10.0.0.1, got {value[:80]!r}"
        ) from None


IPAddress = Annotated[str, AfterValidator(_check_ip)]
"""An IPv4 or IPv6 address (normalised: ``10.0.0.1``, ``fe80::1``)."""


def _check_url(value: str) -> str:
    from urllib.parse import urlsplit

    expected = f"expected an http(s) URL such as https://ops.example/hook, got {value[:80]!r}"
    if len(value) > MAX_URL or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(expected)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(expected)
    return value


URL = Annotated[str, AfterValidator(_check_url)]


def _check_endpoint(value: str) -> str:
    """The forms `ringfence.store.etcd.parse_endpoint` reads: ``host``, ``host:port`` or
    ``http(s)://host:port`` (checked here too, so that `check` finds a bad one; the store
    module is not imported, it pulls in the etcd client)."""
    from urllib.parse import urlsplit

    expected = (
        f"expected an etcd client URL such as http://10.0.0.1:2379 (or host:port), "
        f"got {value[:80]!r}"
    )
    if not value or len(value) > MAX_URL or any(ch.isspace() or not ch.isprintable()
                                                 for ch in value):
        raise ValueError(expected)
    try:
        parts = urlsplit(value if "://" in value else f"//{value}")
        parts.port  # noqa: B018
    except ValueError:
        raise ValueError(expected + "; the port must be 1-65535") from None
    if parts.scheme not in ("", "http", "https") or not parts.hostname:
        raise ValueError(expected)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(expected + "; no path")
    return value


Endpoint = Annotated[str, AfterValidator(_check_endpoint)]


def _check_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if (
        not sep
        or not host
        or len(value) > MAX_URL
        or any(ch.isspace() for ch in value)
        or not port.isdigit()
        or not 1 <= int(port) <= 65535
    ):
        raise ValueError(f"expected HOST:PORT such as 10.1.2.3:443, got {value[:80]!r}")
    return value


HostPort = Annotated[str, AfterValidator(_check_host_port)]

_HYPERVISOR = re.compile(r"process|[a-z][a-z0-9+.-]*://[^\s]*")


def _check_hypervisor(value: str) -> str:
    if len(value) > MAX_URL or not _HYPERVISOR.fullmatch(value):
        raise ValueError(
            f"expected process or a libvirt URI such as qemu:///system, got {value[:80]!r}"
        )
    return value


Hypervisor = Annotated[str, AfterValidator(_check_hypervisor)]

NetworkRole = Literal["heartbeat", "vm", "storage", "management"]

_MAC = re.compile(r"[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}")


def _check_param(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ValueError(f"a parameter value is at most {MAX_TEXT} characters")
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"expected a string, number or boolean, got {describe_value(value)}")


ParamValue = Annotated[str | int | float | bool, BeforeValidator(_check_param)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- models


class Timing(_Model):
    """Heartbeat, lease, watchdog and fencing timers. Defaults are safe; checked together."""

    heartbeat_interval: Annotated[Duration, duration_range(0.01, 10.0)] = 0.2
    heartbeat_timeout: Annotated[Duration, duration_range(0.02, 60.0)] | None = None
    host_lease_ttl: Annotated[Duration, duration_range(1.0, 600.0)] = 6.0
    watchdog_timeout: Annotated[Duration, duration_range(1.0, 600.0)] = 4.0
    safety_margin: Annotated[Duration, duration_range(0.0, 300.0, above=True)] = 1.0
    clock_margin: Annotated[Duration, duration_range(0.0, 60.0, above=True)] = 0.5
    manager_lease_ttl: Annotated[Duration, duration_range(0.5, 600.0)] | None = None
    fence_timeout: Annotated[Duration, duration_range(1.0, 600.0)] = 30.0
    cycle_budget: Annotated[Duration, duration_range(0.001, 60.0)] | None = None
    store_timeout: Annotated[Duration, duration_range(0.01, 300.0)] | None = None

    @property
    def effective_cycle_budget(self) -> float:
        """How long one decision cycle may take before it is journaled as `cycle_overrun`:
        ``cycle_budget``, or half a heartbeat interval. Heartbeats and the watchdog never wait
        for a decision cycle; a slow one only delays decisions."""
        if self.cycle_budget is not None:
            return self.cycle_budget
        return self.heartbeat_interval / 2

    @property
    def effective_store_timeout(self) -> float:
        """How long one store call may wait, over every endpoint: ``store_timeout``, or the
        longest that still lets a renewal that is due be tried twice before the self-fence
        deadline: ``(host_lease_ttl - safety_margin - host_lease_ttl / 3) / 2`` (1.5 s at
        the defaults). A slow store that answers within it never makes a host self-fence."""
        if self.store_timeout is not None:
            return self.store_timeout
        return (self.host_lease_ttl - self.safety_margin - self.host_lease_ttl / 3) / 2

    @property
    def effective_heartbeat_timeout(self) -> float:
        """``heartbeat_timeout``, or four heartbeat intervals when it is not set."""
        if self.heartbeat_timeout is not None:
            return self.heartbeat_timeout
        return 4 * self.heartbeat_interval

    @property
    def effective_manager_lease_ttl(self) -> float:
        """``manager_lease_ttl``, or a third of ``host_lease_ttl`` (at least five heartbeat
        intervals) when it is not set. Short, because a new leader can act only once the old
        leader's key has expired; safe at any length, because every manager write is guarded
        by the key's lease."""
        if self.manager_lease_ttl is not None:
            return self.manager_lease_ttl
        return max(self.host_lease_ttl / 3, 5 * self.heartbeat_interval)

    @model_validator(mode="after")
    def _check_timers(self) -> Self:
        problems: list[tuple[Loc, str]] = []

        def bad(field: str, *message: str) -> None:
            problems.append(((field,), "".join(message)))

        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None and value <= 0:
                bad(name, f"{name} must be longer than 0s")
        if problems:
            raise FieldProblems(problems)
        d = format_duration
        ttl = self.host_lease_ttl
        interval = self.heartbeat_interval
        timeout = self.effective_heartbeat_timeout
        if self.watchdog_timeout >= ttl:
            bad(
                "watchdog_timeout",
                f"watchdog_timeout ({d(self.watchdog_timeout)}) must be shorter than ",
                f"host_lease_ttl ({d(ttl)}), or a hung host could still run VMs after its ",
                "lease moved; lower watchdog_timeout or raise host_lease_ttl",
            )
        if self.heartbeat_timeout is not None and 2 * interval > timeout:
            bad(
                "heartbeat_timeout",
                f"heartbeat_timeout ({d(timeout)}) must be at least twice ",
                f"heartbeat_interval ({d(interval)}), or one late heartbeat would count as a ",
                f"lost link; set it to {d(2 * interval)} or more",
            )
        if timeout >= ttl and self.heartbeat_timeout is not None:
            bad(
                "heartbeat_timeout",
                f"heartbeat_timeout ({d(timeout)}) must be shorter than host_lease_ttl ",
                f"({d(ttl)}), so that heartbeats notice a lost host before its lease runs ",
                "out; lower heartbeat_timeout or raise host_lease_ttl",
            )
        elif timeout >= ttl:
            bad(
                "heartbeat_interval",
                f"the heartbeat timeout (4 × heartbeat_interval = {d(timeout)}) must be ",
                f"shorter than host_lease_ttl ({d(ttl)}), so that heartbeats notice a lost ",
                "host before its lease runs out; lower heartbeat_interval, set a shorter ",
                "heartbeat_timeout or raise host_lease_ttl",
            )
        if self.safety_margin >= ttl * 2 / 3:
            bad(
                "safety_margin",
                f"safety_margin ({d(self.safety_margin)}) must be shorter than two thirds ",
                f"of host_lease_ttl ({d(ttl)}): the lease is renewed every ",
                "host_lease_ttl/3, and a healthy host must keep petting its watchdog between ",
                "renewals; lower safety_margin or raise host_lease_ttl",
            )
        if not problems:
            self._check_call_budget(bad)
        if problems:
            raise FieldProblems(problems)
        return self

    def _check_call_budget(self, bad: Callable[..., None]) -> None:
        """Patroni's rule (`loop_wait + 2 * retry_timeout <= ttl`), ours: a renewal that is
        due (at a third of the lease) must be able to fail once and be tried again, each try
        waiting its full store timeout, before the self-fence deadline; and the heartbeat
        cycle, which pets the watchdog, must come round well within the watchdog timeout."""
        d = format_duration
        ttl, margin = self.host_lease_ttl, self.safety_margin
        works = (ttl - margin - ttl / 3) / 2
        if self.store_timeout is not None and ttl / 3 + 2 * self.store_timeout > ttl - margin:
            bad("store_timeout",
                f"store_timeout ({d(self.store_timeout)}) is too long: a renewal due at "
                f"host_lease_ttl/3 ({d(ttl / 3)}) that fails after store_timeout and is tried "
                f"again must end before the self-fence deadline, host_lease_ttl - "
                f"safety_margin ({d(ttl - margin)}); set store_timeout to {d(works)} or less")
        if self.watchdog_timeout <= 2 * self.heartbeat_interval:
            bad("watchdog_timeout",
                f"watchdog_timeout ({d(self.watchdog_timeout)}) must be longer than two "
                f"heartbeat intervals ({d(2 * self.heartbeat_interval)}): the heartbeat cycle "
                f"pets the watchdog, and one late cycle must not reset the host")


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


class StoreTLS(_Model):
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None


class StoreConfig(_Model):
    """The coordination store. Empty ``members``: every host and witness is a member."""

    kind: Literal["sqlite", "etcd"] | None = None
    members: list[str] = Field(default_factory=list, max_length=MAX_HOSTS + MAX_WITNESSES)
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=16)
    path: FilePath | None = None
    tls: StoreTLS | None = None
    # etcd authentication; the password is read from a file
    username: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    password_file: FilePath | None = None
    # The one host that may create the store's cluster identity in an empty store that no
    # host has ever joined (`ringfence agent --bootstrap` overrides; see core.identity).
    bootstrap: str | None = None


class FenceConfig(_Model):
    """How to fence one host: a fence agent (``power`` in simulation) and its parameters."""

    agent: Annotated[str, Field(min_length=1, max_length=MAX_PATH)]
    params: dict[str, ParamValue] = Field(default_factory=dict, max_length=64)
    network: str | None = None
    delay: Annotated[Duration, duration_range(0.0, 300.0)] = 0.0
    duration: Annotated[Duration, duration_range(0.0, 300.0)] = 0.5
    # Simulation only: the agent answers only after this long, and then acts (unless stopped).
    hang: Annotated[Duration, duration_range(0.0, 3600.0)] | None = None


class ProbeConfig(_Model):
    """Datastore write probe: a command to run, or a file to write, fsync and read back."""

    kind: Literal["command", "file"]
    argv: list[Text] = Field(default_factory=list, max_length=64)
    path: FilePath | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        if self.kind == "command":
            if not self.argv:
                raise FieldProblems(
                    [
                        (
                            ("argv",),
                            "a command probe needs argv: the command and its arguments as a list",
                        )
                    ]
                )
            if self.path is not None:
                raise FieldProblems(
                    [(("path",), "path belongs to file probes; a command probe takes argv")]
                )
        else:
            if not self.path:
                raise FieldProblems(
                    [(("path",), "a file probe needs path: the file to write, fsync and read back")]
                )
            if self.argv:
                raise FieldProblems(
                    [(("argv",), "argv belongs to command probes; a file probe takes path")]
                )
        return self


class Datastore(_Model):
    name: Name
    probe: ProbeConfig | None = None


class Group(_Model):
    """VMs that must run apart (``anti_affinity``) or together (``affinity``)."""

    name: Name
    vms: list[str] = Field(min_length=2, max_length=MAX_VMS)
    rule: Literal["anti_affinity", "affinity"]


class VerifyConfig(_Model):
    """How to check that a recovered VM answers: exactly one of tcp, icmp, guest_agent."""

    tcp: str | None = None
    icmp: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    guest_agent: bool = False
    timeout: Annotated[Duration, duration_range(0.1, 300.0)] = 5.0

    @field_validator("tcp")
    @classmethod
    def _check_tcp(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT such as 10.1.2.3:443, got {value!r}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [
            name
            for name, on in (
                ("tcp", self.tcp is not None),
                ("icmp", self.icmp is not None),
                ("guest_agent", self.guest_agent),
            )
            if on
        ]
        if len(chosen) != 1:
            got = "none" if not chosen else " and ".join(chosen)
            raise FieldProblems(
                [
                    (
                        (),
                        "give exactly one check: tcp: HOST:PORT, icmp: HOST or "
                        f"guest_agent: true (got {got})",
                    )
                ]
            )
        if self.timeout <= 0:
            raise FieldProblems([(("timeout",), "timeout must be longer than 0s")])
        return self


class VM(_Model):
    """A protected virtual machine. ``host`` is where it runs at the start, if anywhere."""

    name: Name
    cpus: int = Field(ge=1, le=1024)
    memory: Annotated[Size, size_range(1 << 20, 16 << 40)]
    host: str | None = None
    priority: Annotated[int, number_range(-1000, 1000)] = 0
    prefer: list[str] = Field(default_factory=list, max_length=MAX_HOSTS)
    datastores: list[str] = Field(default_factory=list, max_length=MAX_DATASTORES)
    domain_xml_file: FilePath | None = None
    verify: VerifyConfig | None = None


class Policy(_Model):
    failback: bool = False
    evacuate_degraded: bool = True
    host_failures_to_tolerate: int = Field(default=1, ge=0, le=MAX_HOSTS - 1)
    shutdown: Literal["conditional", "freeze", "failover", "migrate"] = "conditional"
    max_restart: int = Field(default=1, ge=0, le=100)
    max_relocate: int = Field(default=1, ge=0, le=100)


class ApiTLS(_Model):
    cert_file: FilePath | None = None
    key_file: FilePath | None = None


class ApiConfig(_Model):
    listen: HostPort = "127.0.0.1:8443"
    tls: ApiTLS | None = None
    tokens_file: FilePath | None = None


_T = TypeVar("_T", Host, VM, Network, Witness)


class ClusterConfig(_Model):
    """A whole cluster; the ``cluster:`` section of a scenario file has the same schema."""

    name: Name = "cluster"
    key_file: FilePath | None = None
    timing: Timing = Field(default_factory=Timing)
    networks: list[Network] = Field(max_length=MAX_NETWORKS)
    hosts: list[Host] = Field(min_length=1, max_length=MAX_HOSTS)
    witnesses: list[Witness] = Field(default_factory=list, max_length=MAX_WITNESSES)
    store: StoreConfig = Field(default_factory=StoreConfig)
    fencing: dict[str, FenceConfig] = Field(default_factory=dict, max_length=MAX_HOSTS)
    datastores: list[Datastore] = Field(default_factory=list, max_length=MAX_DATASTORES)
    groups: list[Group] = Field(default_factory=list, max_length=MAX_GROUPS)
    vms: list[VM] = Field(default_factory=list, max_length=MAX_VMS)
    policy: Policy = Field(default_factory=Policy)
    alerts: list[Alert] = Field(default_factory=list, max_length=MAX_ALERTS)
    api: ApiConfig | None = None

    # Lookup tables, built on first use. Each remembers the list it indexes, so that a
    # model_copy(update=...) that replaces the list never sees a stale table.
    _index: dict[str, tuple[list[Any], dict[str, Any]]] = PrivateAttr(default_factory=dict)

    def _lookup(self, attribute: str, items: list[_T], name: str, kind: str) -> _T:
        cached = self._index.get(attribute)
        if cached is None or cached[0] is not items:
            cached = (items, {item.name: item for item in items})
            self._index[attribute] = cached
        table: dict[str, _T] = cached[1]
        try:
            return table[name]
        except KeyError:
            raise KeyError(unknown_name(kind, name, [item.name for item in items])) from None

    def host(self, name: str) -> Host:
        """The host called *name*; :class:`KeyError` if there is none."""
        return self._lookup("hosts", self.hosts, name, "host")

    def witness(self, name: str) -> Witness:
        """The witness called *name*; :class:`KeyError` if there is none."""
        return self._lookup("witnesses", self.witnesses, name, "witness")

    def vm(self, name: str) -> VM:
        """The VM called *name*; :class:`KeyError` if there is none."""
        return self._lookup("vms", self.vms, name, "VM")

    def network(self, name: str) -> Network:
        """The network called *name*; :class:`KeyError` if there is none."""
        return self._lookup("networks", self.networks, name, "network")

    def network_list(self) -> list[str]:
        """Names of all networks, in file order."""
        return [network.name for network in self.networks]

    def heartbeat_networks(self) -> list[str]:
        """Names of the networks with role ``heartbeat``, in file order."""
        return [network.name for network in self.networks if "heartbeat" in network.role]

    def store_members(self) -> list[str]:
        """Store members: ``store.members``, or every host and then every witness."""
        if self.store.members:
            return list(self.store.members)
        return [host.name for host in self.hosts] + [w.name for w in self.witnesses]

    def host_networks(self, name: str) -> list[str]:
        """Networks that the host or witness called *name* is on."""
        all_networks = self.network_list()
        for host in self.hosts:
            if host.name == name:
                return host.network_names(all_networks)
        for witness in self.witnesses:
            if witness.name == name:
                return witness.network_names(all_networks)
        raise KeyError(
            unknown_name("host or witness", name, self.node_names(), "hosts and witnesses")
        )

    def node_names(self) -> list[str]:
        """Names of every host and then every witness, in file order."""
        return [host.name for host in self.hosts] + [w.name for w in self.witnesses]

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems: list[tuple[Loc, str]] = []

        def add(loc: Loc, message: str) -> None:
            problems.append((loc, message))

        self._check_unique(add)
        self._check_networks(add)
        self._check_references(add)
        self._check_capacity(add)
        if problems:
            raise FieldProblems(problems)
        return self

    def _check_unique(self, add: Callable[[Loc, str], None]) -> None:
        def unique(kind: str, entries: Iterable[tuple[Loc, str]]) -> None:
            first: dict[str, Loc] = {}
            for loc, name in entries:
                if name in first:
                    add(
                        loc,
                        f"duplicate {kind} name {name!r}; {format_path(first[name])} "
                        "already uses it",
                    )
                else:
                    first[name] = loc

        unique("network", ((("networks", i, "name"), n.name) for i, n in enumerate(self.networks)))
        unique(
            "host or witness",
            [
                *((("hosts", i, "name"), h.name) for i, h in enumerate(self.hosts)),
                *((("witnesses", i, "name"), w.name) for i, w in enumerate(self.witnesses)),
            ],
        )
        unique("VM", ((("vms", i, "name"), vm.name) for i, vm in enumerate(self.vms)))
        unique(
            "datastore",
            ((("datastores", i, "name"), ds.name) for i, ds in enumerate(self.datastores)),
        )
        unique("group", ((("groups", i, "name"), g.name) for i, g in enumerate(self.groups)))
        for i, network in enumerate(self.networks):
            if network.name == "all":
                add(
                    ("networks", i, "name"),
                    "'all' is reserved (events use network: all for "
                    "every network); choose another name",
                )
        for i, host in enumerate(self.hosts):
            if host.name == "any":
                add(
                    ("hosts", i, "name"),
                    "'any' is reserved (expectations use running_on: any); choose another name",
                )
        heartbeat = set(self.heartbeat_networks())
        addresses: dict[tuple[str, str], Loc] = {}
        for i, host in enumerate(self.hosts):
            for network_name, interface in host.interfaces.items():
                if interface.address is None:
                    continue
                at: Loc = ("hosts", i, "interfaces", network_name, "address")
                if network_name in heartbeat and ":" in interface.address:
                    add(
                        at,
                        f"{interface.address} is an IPv6 address; heartbeats are sent over "
                        "IPv4 (UDP): give the host's IPv4 address on this network",
                    )
                where = (network_name, interface.address)
                if where in addresses:
                    add(
                        at,
                        f"address {interface.address} on network {network_name} is also given "
                        f"at {format_path(addresses[where])}; every host has its own address",
                    )
                else:
                    addresses[where] = at
        macs: dict[str, Loc] = {}
        for i, host in enumerate(self.hosts):
            for network_name, interface in host.interfaces.items():
                if interface.mac is None:
                    continue
                loc: Loc = ("hosts", i, "interfaces", network_name, "mac")
                if interface.mac in macs:
                    add(
                        loc,
                        f"MAC address {interface.mac} is also given at "
                        f"{format_path(macs[interface.mac])}; every NIC has its own MAC",
                    )
                else:
                    macs[interface.mac] = loc

    def _check_networks(self, add: Callable[[Loc, str], None]) -> None:
        names = self.network_list()
        known = set(names)
        heartbeat = self.heartbeat_networks()

        def check(loc: Loc, name: str) -> None:
            if name not in known:
                add(loc, unknown_name("network", name, names))

        if not heartbeat:
            add(
                ("networks",),
                "no network has role heartbeat; give at least one network role: heartbeat",
            )
        for i, host in enumerate(self.hosts):
            for k, name in enumerate(host.networks):
                check(("hosts", i, "networks", k), name)
            for name in host.interfaces:
                check(("hosts", i, "interfaces", name), name)
            on = host.network_names(names)
            if heartbeat and not any(name in heartbeat for name in on):
                where: Loc = ("hosts", i, "networks") if host.networks else ("hosts", i)
                add(
                    where,
                    f"host {host.name!r} is on no heartbeat network (it is on: "
                    f"{', '.join(on) or 'nothing'}); add one of: {', '.join(heartbeat)}",
                )
        for i, witness in enumerate(self.witnesses):
            for k, name in enumerate(witness.networks):
                check(("witnesses", i, "networks", k), name)
        for host_name, fence in self.fencing.items():
            if fence.network is not None:
                check(("fencing", host_name, "network"), fence.network)

    def _check_references(self, add: Callable[[Loc, str], None]) -> None:
        hosts = [host.name for host in self.hosts]
        host_set = set(hosts)
        nodes = self.node_names()
        node_set = set(nodes)
        vms = [vm.name for vm in self.vms]
        vm_set = set(vms)
        datastores = [ds.name for ds in self.datastores]
        datastore_set = set(datastores)

        seen_members: set[str] = set()
        for k, member in enumerate(self.store.members):
            loc: Loc = ("store", "members", k)
            if member not in node_set:
                add(loc, unknown_name("host or witness", member, nodes, "hosts and witnesses"))
            elif member in seen_members:
                add(loc, f"{member!r} is listed twice")
            seen_members.add(member)
        witness_set = {witness.name for witness in self.witnesses}

        def host_ref(loc: Loc, name: str, what: str) -> None:
            if name in host_set:
                return
            if name in witness_set:
                add(loc, f"{name!r} is a witness, which runs no VMs; {what} names a host")
            else:
                add(loc, unknown_name("host", name, hosts))

        for host_name in self.fencing:
            host_ref(("fencing", host_name), host_name, "each fencing entry")
        if self.store.bootstrap is not None:
            host_ref(("store", "bootstrap"), self.store.bootstrap, "store.bootstrap")
        for i, group in enumerate(self.groups):
            seen: set[str] = set()
            for k, vm_name in enumerate(group.vms):
                if vm_name not in vm_set:
                    add(("groups", i, "vms", k), unknown_name("VM", vm_name, vms))
                elif vm_name in seen:
                    add(("groups", i, "vms", k), f"VM {vm_name!r} is listed twice")
                seen.add(vm_name)
        for i, vm in enumerate(self.vms):
            if vm.host is not None:
                host_ref(("vms", i, "host"), vm.host, "host")
            for k, preferred in enumerate(vm.prefer):
                host_ref(("vms", i, "prefer", k), preferred, "prefer")
        if datastores:
            for i, host in enumerate(self.hosts):
                for k, name in enumerate(host.datastores):
                    if name not in datastore_set:
                        add(
                            ("hosts", i, "datastores", k),
                            unknown_name("datastore", name, datastores),
                        )
            for i, vm in enumerate(self.vms):
                for k, name in enumerate(vm.datastores):
                    if name not in datastore_set:
                        add(
                            ("vms", i, "datastores", k), unknown_name("datastore", name, datastores)
                        )

    def _check_capacity(self, add: Callable[[Loc, str], None]) -> None:
        by_name = {host.name: host for host in self.hosts}
        placed: dict[str, list[int]] = {}
        for i, vm in enumerate(self.vms):
            host = by_name.get(vm.host) if vm.host is not None else None
            if host is None:
                continue
            fits = True
            if vm.cpus > host.cpus:
                fits = False
                add(
                    ("vms", i, "cpus"),
                    f"VM {vm.name!r} needs {vm.cpus} CPUs but its host "
                    f"{host.name!r} has {host.cpus}",
                )
            if vm.memory > host.memory:
                fits = False
                add(
                    ("vms", i, "memory"),
                    f"VM {vm.name!r} needs {format_size(vm.memory)} of "
                    f"memory but its host {host.name!r} has "
                    f"{format_size(host.memory)}",
                )
            if fits:
                placed.setdefault(host.name, []).append(i)
        for host_name, indices in placed.items():
            host = by_name[host_name]
            for resource, need, have, fmt in (
                ("CPUs", [self.vms[i].cpus for i in indices], host.cpus, str),
                ("memory", [self.vms[i].memory for i in indices], host.memory, format_size),
            ):
                if sum(need) <= have:
                    continue
                running = 0
                overflow = indices[-1]
                for index, amount in zip(indices, need, strict=True):
                    running += amount
                    if running > have:
                        overflow = index
                        break
                listing = ", ".join(
                    f"{self.vms[i].name} ({fmt(n)})" for i, n in zip(indices, need, strict=True)
                )
                add(
                    ("vms", overflow, "host"),
                    f"the VMs placed on host {host_name!r} need {fmt(sum(need))} {resource} "
                    f"together but it has {fmt(have)}: {listing}; start some elsewhere or "
                    "leave their host unset",
                )


# ------------------------------------------------------------------------------ YAML with lines

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars (see the module docstring), which refuses
    nesting deeper than :data:`MAX_YAML_DEPTH` while it composes (PyYAML's composer recurses
    once per level: without a bound, ``[[[[...`` ends in a RecursionError)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _YamlShapeError(_too_deep(), mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _too_deep() -> str:
    return (
        f"lists and mappings nest more than {MAX_YAML_DEPTH} levels deep here; no ringfence "
        "file needs that many (a generated or hostile file?)"
    )


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in (_NULL_TAG, _MERGE_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?[0-9]+$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9]+[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_decimal_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(None, None, "expected an integer", node.start_mark)
    return int(str(node.value))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_decimal_int)


class _YamlShapeError(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Expansion:
    """What aliases have added so far: every node reached a second time (through an alias)
    counts, with everything below it, against :data:`MAX_ALIAS_VALUES`."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.repeated = 0

    def visit(self, node: yaml.Node, via_alias: bool, line: int | None) -> bool:
        """Record a visit of *node*; True when it (or an ancestor) was reached by an alias."""
        again = via_alias or id(node) in self.seen
        self.seen.add(id(node))
        if again:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_VALUES:
                raise _YamlShapeError(
                    f"aliases (*name) expand to more than {MAX_ALIAS_VALUES:,} values; write "
                    "the values out, or use fewer aliases (a YAML alias bomb?)",
                    line,
                )
        return again


def _node_to_python(
    loader: _Loader,
    node: yaml.Node,
    loc: Loc,
    lines: LineMap,
    active: set[int],
    expansion: _Expansion,
    via_alias: bool = False,
) -> object:
    line = _line_for(loc, lines)
    if len(loc) >= MAX_YAML_DEPTH:
        # an alias can nest a list in itself again and again: the composer's bound does not
        # see that, the expanded document does
        raise _YamlShapeError(_too_deep(), line)
    via_alias = expansion.visit(node, via_alias, line)
    if isinstance(node, yaml.MappingNode):
        if id(node) in active:
            raise _YamlShapeError(
                "an alias refers to a mapping that contains it", node.start_mark.line + 1
            )
        active.add(id(node))
        own: dict[str, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YamlShapeError(
                    "mapping keys must be plain names, not lists or mappings",
                    key_node.start_mark.line + 1,
                )
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in own:
                raise _YamlShapeError(
                    f"duplicate key {key!r} (first given on line {own[key]})", line
                )
            own[key] = line
        loader.flatten_mapping(node)
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YamlShapeError(
                    "mapping keys must be plain names, not lists or mappings",
                    key_node.start_mark.line + 1,
                )
            key = str(key_node.value)
            if not via_alias:
                lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = _node_to_python(
                loader, value_node, (*loc, key), lines, active, expansion, via_alias
            )
        active.discard(id(node))
        return result
    if isinstance(node, yaml.SequenceNode):
        if id(node) in active:
            raise _YamlShapeError(
                "an alias refers to a list that contains it", node.start_mark.line + 1
            )
        active.add(id(node))
        items: list[object] = []
        for index, item in enumerate(node.value):
            if not via_alias:
                lines[(*loc, index)] = item.start_mark.line + 1
            items.append(
                _node_to_python(loader, item, (*loc, index), lines, active, expansion, via_alias)
            )
        active.discard(id(node))
        return items
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, *, file: str | None = None) -> tuple[object, LineMap]:
    """Parse one YAML document; return the data and the line of every key and list item.

    Raises :class:`ConfigError` (naming *file* and the line) for syntax errors, duplicate keys,
    non-string keys, more than one document, an empty document, nesting deeper than
    :data:`MAX_YAML_DEPTH` and aliases that expand to more than :data:`MAX_ALIAS_VALUES`
    values.
    """
    lines: LineMap = {}
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty; expected a mapping of fields", file=file)
        lines[()] = node.start_mark.line + 1
        data = _node_to_python(loader, node, (), lines, set(), _Expansion())
    except _YamlShapeError as exc:
        raise ConfigError(exc.message, file=file, line=exc.line) from None
    except RecursionError:
        # Last line of defence: PyYAML's merge-key flattening (<<: *a, where a merges another,
        # and so on) recurses once per link of such a chain.
        raise ConfigError(
            f"merge keys (<<) or aliases chain more than {MAX_YAML_DEPTH} levels deep", file=file
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context
        if exc.context_mark is not None and mark is not None and context:
            if exc.problem and "<stream end>" in exc.problem:
                # "got <stream end>" points past the last line: show where the open thing began
                mark = exc.context_mark
            elif exc.context_mark.line != mark.line:
                context += f" started on line {exc.context_mark.line + 1}"
        parts = [part for part in (context, exc.problem) if part]
        message = "invalid YAML: " + ("; ".join(parts) if parts else "syntax error")
        if exc.problem and "'\\t'" in exc.problem:
            message += " (indent with spaces, not tabs)"
        raise ConfigError(
            message, file=file, line=mark.line + 1 if mark is not None else None
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    return data, lines


def read_yaml(path: str | Path) -> tuple[object, LineMap]:
    """Read and parse the YAML file *path*; :class:`ConfigError` if it cannot be read or parsed."""
    file = str(path)
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(
                f"the file is larger than {MAX_YAML_BYTES >> 20} MiB; a cluster or scenario "
                "file is much smaller (is this the right file?)",
                file=file,
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except IsADirectoryError:
        raise ConfigError("is a directory; expected a YAML file", file=file) from None
    except PermissionError:
        raise ConfigError("cannot read the file: permission denied", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (bad byte at offset {exc.start}); expected a YAML file", file=file
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    return parse_yaml(text, file=file)


# ----------------------------------------------------------------- validation errors, humanised

_M = TypeVar("_M", bound=BaseModel)
_MISSING = object()


def _strip_annotation(annotation: object) -> object:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            args = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    return {(field.alias or name): field for name, field in model.model_fields.items()}


def _annotation_at(root: type[BaseModel], loc: Loc) -> object:
    annotation: object = root
    for segment in loc:
        annotation = _strip_annotation(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _model_fields(annotation).get(str(segment))
            if field is None:
                return None
            annotation = field.annotation
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is list and isinstance(segment, int) and args:
            annotation = args[0]
        elif origin is dict and isinstance(segment, str) and len(args) == 2:
            annotation = args[1]
        else:
            return None
    return _strip_annotation(annotation)


def _resolve_loc(loc: Loc, data: object) -> Loc:
    """Map pydantic's error location onto the data as written.

    Stops at a scalar (pydantic may add segments below it, such as list indexes after a single
    role string was made a list, or union member tags) and keeps segments that name absent keys
    (missing required fields).
    """
    out: list[str | int] = []
    current: object = data
    for segment in loc:
        if current is _MISSING:
            out.append(segment)
        elif isinstance(current, dict):
            out.append(segment)
            current = current.get(segment, _MISSING)
        elif isinstance(current, list) and isinstance(segment, int):
            out.append(segment)
            current = current[segment] if 0 <= segment < len(current) else _MISSING
        elif isinstance(current, list | str | int | float | bool) or current is None:
            break
        else:
            out.append(segment)
            current = _MISSING
    return tuple(out)


def _type_message(expected: str, value: object) -> str:
    message = f"expected {expected}, got {describe_value(value)}"
    if expected == "a string" and isinstance(value, int | float) and not isinstance(value, bool):
        message += " (put it in quotes)"
    return message


_TYPE_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value pairs)",
    "model_type": "a mapping (key: value pairs)",
    "model_attributes_type": "a mapping (key: value pairs)",
}


def _humanise(error: Any, root: type[BaseModel]) -> str:
    kind: str = error["type"]
    loc: Loc = tuple(error["loc"])
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing" and loc:
        return f"missing required field {loc[-1]!r}"
    if kind == "extra_forbidden" and loc:
        name = str(loc[-1])
        parent = _annotation_at(root, loc[:-1])
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            allowed = list(_model_fields(parent))
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            if close:
                return f"unknown field {name!r}; did you mean {close[0]!r}?"
            return f"unknown field {name!r}; allowed fields: {', '.join(allowed)}"
        return f"unknown field {name!r}"
    if kind == "literal_error":
        annotation = _annotation_at(root, loc)
        if get_origin(annotation) is Literal:
            choices = [str(choice) for choice in get_args(annotation)]
            message = (
                f"{describe_value(value)} is not allowed here; expected one of: "
                f"{', '.join(choices)}"
            )
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            return message
        return f"{describe_value(value)} is not allowed here; expected {ctx.get('expected')}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in _TYPE_EXPECTED:
        return _type_message(_TYPE_EXPECTED[kind], value)
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}, got {describe_value(value)}"
    if kind == "too_short":
        least = ctx.get("min_length")
        return (
            f"needs at least {least} item{'s' if least != 1 else ''}, got "
            f"{ctx.get('actual_length')}"
        )
    if kind == "too_long":
        return f"allows at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return (
            f"must be at most {ctx.get('max_length')} characters long, got "
            f"{len(value) if isinstance(value, str) else 'more'}"
        )
    return str(error.get("msg", "invalid value"))


def _line_for(loc: Loc, lines: LineMap | None) -> int | None:
    if not lines:
        return None
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def validate_document(
    model: type[_M],
    data: object,
    *,
    file: str | None = None,
    lines: LineMap | None = None,
    what: str = "document",
) -> _M:
    """Validate *data* (parsed from *file*) as *model*; :class:`ConfigError` on any problem.

    Every problem names the file, the line (from *lines*, falling back to the nearest enclosing
    key or item that has one), the field path as written in the file, and what is expected.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of {what} fields at the top level, got {describe_value(data)}",
            file=file,
            line=_line_for((), lines),
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems: list[Problem] = []
        seen: set[tuple[str, str]] = set()

        def add(loc: Loc, message: str) -> None:
            path = format_path(loc)
            if (path, message) not in seen:
                seen.add((path, message))
                problems.append(
                    Problem(file=file, line=_line_for(loc, lines), path=path, message=message)
                )

        for error in exc.errors():
            loc = tuple(error["loc"])
            raised = (error.get("ctx") or {}).get("error")
            if isinstance(raised, FieldProblems):
                for relative, message in raised.problems:
                    add((*_resolve_loc(loc, data), *relative), message)
            else:
                add(_resolve_loc(loc, data), _humanise(error, model))
        problems.sort(key=lambda problem: (problem.line is None, problem.line or 0))
        raise ConfigError(problems=problems) from None


def parse_cluster(
    data: object, *, file: str | None = None, lines: LineMap | None = None
) -> ClusterConfig:
    """Validate parsed cluster-file data; :class:`ConfigError` names file, line and field."""
    return validate_document(ClusterConfig, data, file=file, lines=lines, what="cluster")


def load_cluster(path: str | Path) -> ClusterConfig:
    """Read, parse and validate the cluster file *path*; :class:`ConfigError` on any problem."""
    data, lines = read_yaml(path)
    return parse_cluster(data, file=str(path), lines=lines)
