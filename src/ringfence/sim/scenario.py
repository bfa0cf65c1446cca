"""The scenario file: a cluster, a schedule of faults and operator actions, and expectations.

The schema follows ``contracts/scenarios.md``: ``name``, ``description``, ``seed``, ``duration``,
``cluster`` (a :class:`~ringfence.config.ClusterConfig`), ``events``, ``expect``, plus our
``sim`` extension (:class:`SimSettings`: boot time, packet loss, jitter, clock drift...).

Errors:

* Constructing the models from Python raises :class:`pydantic.ValidationError`.
* :func:`load_scenario` and :func:`parse_scenario` raise :class:`ringfence.errors.ConfigError`
  naming the file, the line and the field path (``events[3].host``, ``cluster.hosts[1].memory``)
  with what is expected there: an event ``do`` that does not exist, an event missing a field its
  kind needs or carrying one it does not take, an expectation whose keys match no valid shape,
  references to hosts, witnesses, networks, VMs or datastores the cluster does not define, and
  times after the end of the run.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    model_validator,
)

from ringfence.config import (
    MAX_HOSTS,
    MAX_WITNESSES,
    ClusterConfig,
    FieldProblems,
    LineMap,
    Loc,
    read_yaml,
    unknown_name,
    validate_document,
)
from ringfence.core.events import EVENT_KINDS
from ringfence.units import Duration, Size, duration_range, format_duration, number_range

__all__ = [
    "EVENT_FIELDS",
    "EXPECTATION_SHAPES",
    "HOST_STATES",
    "JOURNAL_EVENT_KINDS",
    "MAX_EVENTS",
    "MAX_EXPECTATIONS",
    "MAX_RUN",
    "MAX_SEED",
    "Event",
    "EventKind",
    "Expectation",
    "ExpectationKind",
    "HostStateName",
    "Scenario",
    "SimSettings",
    "load_scenario",
    "parse_scenario",
]

MAX_SEED = 2**32 - 1
"""Seeds are 0 to 2^32 - 1 (a file's ``seed``, ``--seed``)."""
MAX_RUN = 86400.0
"""A simulated run lasts at most a day (64 hosts simulate at about 90 s per wall second)."""
MAX_EVENTS = 10_000
MAX_EXPECTATIONS = 10_000
MAX_DRIFT_PPM = 1000.0
"""Clock drift: quartz oscillators drift tens of ppm; NTP corrects at most 500 ppm."""

EventKind = Literal[
    "power_off",
    "power_on",
    "reboot",
    "shutdown",
    "hang",
    "resume",
    "link_down",
    "link_up",
    "link_flap",
    "partition",
    "heal",
    "witness_down",
    "witness_up",
    "rename_nics",
    "storage_fail",
    "storage_ok",
    "memory_errors",
    "vm_crash",
    "maintenance",
    "migrate",
    "force_start",
    "store_wipe",
    "agent_stall",
    "slow_calls",
    "lost_answers",
]

EVENT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "power_off": (("host",), ()),
    "power_on": (("host",), ()),
    "reboot": (("host",), ()),
    "shutdown": (("host",), ()),
    "hang": (("host",), ("watchdog",)),
    "resume": (("host",), ()),
    "link_down": (("host", "network"), ()),
    "link_up": (("host", "network"), ()),
    "link_flap": (("host", "network", "count"), ()),
    "partition": (("groups",), ("networks",)),
    "heal": ((), ("networks",)),
    "witness_down": (("witness",), ()),
    "witness_up": (("witness",), ()),
    "rename_nics": (("host",), ()),
    "storage_fail": (("host",), ("datastore",)),
    "storage_ok": (("host",), ("datastore",)),
    "memory_errors": (("host", "count"), ()),
    "vm_crash": (("vm",), ()),
    "maintenance": (("host", "on"), ()),
    "migrate": (("vm", "to"), ()),
    "force_start": (("vm", "host", "operator"), ("confirm_down",)),
    "store_wipe": ((), ("member",)),
    "agent_stall": (("host", "for_"), ()),
    "slow_calls": (("host", "part", "latency", "for_"), ()),
    "lost_answers": (("host", "for_"), ()),
}
"""For each event ``do``: (required fields, optional fields), besides ``at`` and ``do``
(``for_`` is written ``for`` in files)."""

CallPart = Literal["store", "hypervisor", "fence"]

HostStateName = Literal[
    "online",
    "jeopardy",
    "suspect",
    "fenced",
    "offline",
    "ineligible",
    "degraded",
    "maintenance",
    "waiting_for_quorum",
]
HOST_STATES: tuple[str, ...] = get_args(HostStateName)

ExpectationKind = Literal[
    "running_on",
    "not_running_on",
    "max_downtime",
    "host_state",
    "event",
    "no_event",
    "alert",
]

# key that selects the kind -> (kind, required keys, optional keys), keys as written in files
EXPECTATION_SHAPES: dict[str, tuple[ExpectationKind, tuple[str, ...], tuple[str, ...]]] = {
    "running_on": ("running_on", ("vm", "running_on", "at"), ()),
    "not_running_on": ("not_running_on", ("vm", "not_running_on", "from", "to"), ()),
    "max_downtime": ("max_downtime", ("vm", "max_downtime"), ()),
    "state": ("host_state", ("host", "state", "at"), ()),
    "event": ("event", ("event",), ("host", "vm", "from", "to")),
    "no_event": ("no_event", ("no_event",), ("host", "vm", "from", "to")),
    "alert": ("alert", ("alert",), ("by", "route", "delivered")),
}
"""Valid expectation shapes, by the key that decides the kind."""

JOURNAL_EVENT_KINDS: frozenset[str] = frozenset(EVENT_KINDS)
"""Event kinds the journal writes (the contract's list). ``event:``/``no_event:`` expectations
must name one, so that a misspelt ``no_event`` cannot pass vacuously."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _shape_text(required: tuple[str, ...], optional: tuple[str, ...]) -> str:
    parts = list(required) + [f"optional {name}" for name in optional]
    return ", ".join(parts) if parts else "no other fields"


def _valid_shapes() -> str:
    return "; ".join(
        "{" + _shape_text(required, optional) + "}"
        for _kind, required, optional in EXPECTATION_SHAPES.values()
    )


class LatencyRange(_Model):
    """A call latency drawn uniformly from [min, max] (the run's seeded random)."""

    min: Annotated[Duration, duration_range(0.0, 600.0)]
    max: Annotated[Duration, duration_range(0.0, 600.0)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max < self.min:
            raise FieldProblems([(("max",), f"max ({format_duration(self.max)}) is below min "
                                             f"({format_duration(self.min)})")])
        return self


Latency = Annotated[Duration, duration_range(0.0, 600.0)] | LatencyRange


class Latencies(_Model):
    """How long each call of a part takes on the caller's clock (default: no time)."""

    store: Latency = 0.0
    hypervisor: Latency = 0.0
    fence: Latency = 0.0


class SimSettings(_Model):
    """Simulation knobs that are not part of the cluster (our extension of the contract)."""

    boot_time: Annotated[Duration, duration_range(0.0, 3600.0)] = 20.0
    vm_start_time: Annotated[Duration, duration_range(0.0, 3600.0)] = 0.0
    store_election_time: Annotated[Duration, duration_range(0.0, 600.0)] = 1.0
    packet_loss: float = Field(default=0.0, ge=0.0, le=1.0)
    link_jitter: Annotated[Duration, duration_range(0.0, 10.0)] = 0.0
    clock_drift_ppm: Annotated[
        float,
        Field(allow_inf_nan=False),
        number_range(-MAX_DRIFT_PPM, MAX_DRIFT_PPM, "a drift in parts per million"),
    ] = 0.0
    latency: Latencies = Field(default_factory=Latencies)
    # bytes per second of a live migration's memory copy (1 MiB/s to 1 TiB/s)
    migration_bandwidth: Annotated[Size, number_range(1 << 20, 1 << 40, "a size per second")] = (
        1 << 30)
    migration_switchover: Annotated[Duration, duration_range(0.0, 60.0)] = 0.3

    @model_validator(mode="after")
    def _positive_bandwidth(self) -> Self:
        if self.migration_bandwidth <= 0:
            raise FieldProblems([(("migration_bandwidth",),
                                  "a live migration copies memory at more than 0 bytes per "
                                  "second, such as 1GiB")])
        return self


def _written(name: str) -> str:
    """A field's name as files write it (``for_`` is ``for``)."""
    return "for" if name == "for_" else name


class Event(_Model):
    """One fault or operator action at simulated time ``at``; ``do`` says which."""

    at: Duration
    do: EventKind
    host: str | None = None
    network: str | None = None
    networks: list[str] | None = Field(default=None, max_length=16)
    groups: list[list[str]] | None = Field(default=None, max_length=MAX_HOSTS + MAX_WITNESSES)
    witness: str | None = None
    vm: str | None = None
    to: str | None = None
    count: int | None = Field(default=None, ge=1)
    datastore: str | None = None
    watchdog: Literal["running", "frozen"] = "running"
    on: bool | None = None
    operator: Annotated[str, Field(max_length=64)] | None = None
    confirm_down: list[str] = Field(default_factory=list, max_length=MAX_HOSTS)
    member: str | None = None
    for_: Annotated[Duration, duration_range(0.0, 24 * 3600.0)] | None = Field(
        default=None, alias="for")
    part: CallPart | None = None
    latency: Annotated[Duration, duration_range(0.0, 600.0)] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Self:
        required, optional = EVENT_FIELDS[self.do]
        takes = _shape_text(tuple(_written(n) for n in required),
                            tuple(_written(n) for n in optional))
        allowed = {"at", "do", *required, *optional}
        problems: list[tuple[Loc, str]] = []
        for name in type(self).model_fields:
            if name in self.model_fields_set and name not in allowed:
                shown = _written(name)
                problems.append(
                    ((shown,), f"{shown!r} does not belong to do: {self.do}; it takes: {takes}")
                )
        for name in required:
            if getattr(self, name) is None:
                shown = _written(name)
                problems.append(((shown,), f"do: {self.do} needs {shown!r}; it takes: {takes}"))
        if self.for_ is not None and self.for_ <= 0:
            problems.append((("for",), "for must be longer than 0s"))
        if self.groups is not None:
            if not self.groups and "groups" in required:
                problems.append(
                    (
                        ("groups",),
                        "give at least one group of hosts and witnesses, "
                        "as in groups: [[node0], [node1, quorum]]",
                    )
                )
            for index, group in enumerate(self.groups):
                if not group:
                    problems.append(
                        (("groups", index), "a group needs at least one host or witness")
                    )
        if self.operator is not None and not self.operator.strip():
            problems.append((("operator",), "give the operator's name"))
        if self.count is not None:
            # link_flap: the flaps happen within one second; memory_errors: a count per event
            most = 100 if self.do == "link_flap" else 1_000_000
            if self.count > most:
                problems.append(
                    (("count",), f"do: {self.do} takes a count from 1 to {most:,}, "
                                 f"got {self.count:,}")
                )
        if problems:
            raise FieldProblems(problems)
        return self


class Expectation(_Model):
    """One check of a run's outcome; :attr:`kind` says which, from the keys given."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    vm: str | None = None
    running_on: str | None = None
    not_running_on: str | None = None
    at: Duration | None = None
    from_: Duration | None = Field(default=None, alias="from")
    to: Duration | None = None
    max_downtime: Duration | None = None
    host: str | None = None
    state: HostStateName | None = None
    event: str | None = None
    no_event: str | None = None
    alert: str | None = None
    by: Duration | None = None
    route: str | None = None
    delivered: bool | None = None

    _raw: dict[str, object] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_as_written(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        expectation = handler(data)
        if isinstance(data, dict):
            expectation._raw = {
                ("from" if key == "from_" else str(key)): value for key, value in data.items()
            }
        return expectation

    def _given(self) -> dict[str, object]:
        """The fields that are set, keyed as in files (``from`` rather than ``from_``)."""
        given: dict[str, object] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None:
                given[field.alias or name] = value
        return given

    @property
    def kind(self) -> ExpectationKind:
        """``running_on``, ``not_running_on``, ``max_downtime``, ``host_state``, ``event``,
        ``no_event`` or ``alert``."""
        given = self._given()
        for key, (kind, _required, _optional) in EXPECTATION_SHAPES.items():
            if key in given:
                return kind
        raise ValueError("expectation has no kind")  # unreachable after validation

    def as_written(self) -> dict[str, object]:
        """The expectation as the user wrote it (original strings such as ``"60s"``).

        For expectations built in Python without a mapping, durations are rendered with
        :func:`~ringfence.units.format_duration`.
        """
        if self._raw:
            return dict(self._raw)
        return {
            key: (format_duration(value) if isinstance(value, float) else value)
            for key, value in self._given().items()
        }

    @model_validator(mode="after")
    def _check_shape(self) -> Self:
        given = self._given()
        deciders = [key for key in EXPECTATION_SHAPES if key in given]
        if not deciders:
            raise FieldProblems(
                [
                    (
                        (),
                        (
                            "cannot tell what to check: give one of "
                            f"{', '.join(EXPECTATION_SHAPES)}; valid shapes: {_valid_shapes()}"
                        ),
                    )
                ]
            )
        if len(deciders) > 1:
            raise FieldProblems(
                [
                    (
                        (),
                        (
                            f"this expectation mixes {' and '.join(deciders)}; write one "
                            f"expectation per check; valid shapes: {_valid_shapes()}"
                        ),
                    )
                ]
            )
        kind, required, optional = EXPECTATION_SHAPES[deciders[0]]
        shape = _shape_text(required, optional)
        problems: list[tuple[Loc, str]] = []
        for key in given:
            if key not in required and key not in optional:
                problems.append(
                    (
                        (key,),
                        f"{key!r} does not belong to a {kind} expectation; its shape is: {shape}",
                    )
                )
        for key in required:
            if key not in given:
                problems.append(
                    ((key,), f"a {kind} expectation needs {key!r}; its shape is: {shape}")
                )
        if self.from_ is not None and self.to is not None and self.to < self.from_:
            problems.append(
                (
                    ("to",),
                    f"to ({format_duration(self.to)}) is before from "
                    f"({format_duration(self.from_)})",
                )
            )
        name = self.event or self.no_event
        if name is not None and name not in JOURNAL_EVENT_KINDS:
            close = difflib.get_close_matches(name, sorted(JOURNAL_EVENT_KINDS), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else ("known kinds: " + ", ".join(sorted(JOURNAL_EVENT_KINDS)))
            )
            problems.append(
                (
                    ("event" if self.event else "no_event",),
                    f"unknown journal event kind {name!r}; {hint}",
                )
            )
        if problems:
            raise FieldProblems(problems)
        return self


class Scenario(_Model):
    """A scenario file: what to simulate, for how long, and what must hold."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=64_000)
    seed: Annotated[int, number_range(0, MAX_SEED)] = 0
    duration: Annotated[Duration, duration_range(0.0, MAX_RUN, above=True)] = 300.0
    cluster: ClusterConfig
    events: list[Event] = Field(default_factory=list, max_length=MAX_EVENTS)
    expect: list[Expectation] = Field(default_factory=list, max_length=MAX_EXPECTATIONS)
    sim: SimSettings = Field(default_factory=SimSettings)

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems: list[tuple[Loc, str]] = []

        def add(loc: Loc, message: str) -> None:
            problems.append((loc, message))

        for index, event in enumerate(self.events):
            self._check_event(("events", index), event, add)
        for index, expectation in enumerate(self.expect):
            self._check_expectation(("expect", index), expectation, add)
        if problems:
            raise FieldProblems(problems)
        return self

    def _late(
        self, loc: Loc, key: str, value: float | None, add: Callable[[Loc, str], None]
    ) -> None:
        if value is not None and value > self.duration:
            add(
                (*loc, key),
                f"{key} ({format_duration(value)}) is after the end of the run "
                f"(duration: {format_duration(self.duration)})",
            )

    def _check_event(self, loc: Loc, event: Event, add: Callable[[Loc, str], None]) -> None:
        cluster = self.cluster
        hosts = [host.name for host in cluster.hosts]
        witnesses = [witness.name for witness in cluster.witnesses]
        nodes = hosts + witnesses
        vms = [vm.name for vm in cluster.vms]
        networks = cluster.network_list()

        def host(key: str, name: str | None, sub: Loc = ()) -> bool:
            if name is None or name in hosts:
                return True
            if name in witnesses:
                add(
                    (*loc, key, *sub),
                    f"{name!r} is a witness; do: {event.do} needs a host "
                    "(witnesses take witness_down and witness_up)",
                )
            else:
                add((*loc, key, *sub), unknown_name("host", name, hosts))
            return False

        self._late(loc, "at", event.at, add)
        host_ok = (event.do == "slow_calls" and event.host == "all") or host("host", event.host)
        if event.witness is not None and event.witness not in witnesses:
            message = (
                f"{event.witness!r} is a host; do: {event.do} needs a witness"
                if event.witness in hosts
                else unknown_name("witness", event.witness, witnesses, "witnesses")
            )
            add((*loc, "witness"), message)
        if event.network is not None:
            allow_all = event.do in ("link_down", "link_up")
            if event.network == "all" and allow_all:
                pass
            elif event.network not in networks:
                message = unknown_name("network", event.network, networks)
                if allow_all:
                    message += "; or all"
                add((*loc, "network"), message)
            elif host_ok and event.host is not None:
                on = cluster.host_networks(event.host)
                if event.network not in on:
                    add(
                        (*loc, "network"),
                        f"host {event.host!r} is not on network "
                        f"{event.network!r} (it is on: {', '.join(on)})",
                    )
        for index, name in enumerate(event.networks or []):
            if name not in networks:
                add((*loc, "networks", index), unknown_name("network", name, networks))
        if event.groups is not None:
            placed: dict[str, Loc] = {}
            for g, group in enumerate(event.groups):
                for m, member in enumerate(group):
                    where: Loc = (*loc, "groups", g, m)
                    if member not in nodes:
                        add(
                            where,
                            unknown_name("host or witness", member, nodes, "hosts and witnesses"),
                        )
                    elif member in placed:
                        add(
                            where,
                            f"{member!r} is already in groups"
                            f"[{placed[member][-2]}]; each host or witness may be in "
                            "one group only",
                        )
                    else:
                        placed[member] = where
        if event.vm is not None and event.vm not in vms:
            add((*loc, "vm"), unknown_name("VM", event.vm, vms))
        members = cluster.store_members()
        if event.member is not None and event.member not in members:
            add((*loc, "member"), unknown_name("store member", event.member, members))
        host("to", event.to)
        for index, name in enumerate(event.confirm_down):
            host("confirm_down", name, (index,))
        if event.datastore is not None and cluster.datastores:
            datastores = [ds.name for ds in cluster.datastores]
            if event.datastore not in datastores:
                add((*loc, "datastore"), unknown_name("datastore", event.datastore, datastores))

    def _check_expectation(
        self, loc: Loc, expectation: Expectation, add: Callable[[Loc, str], None]
    ) -> None:
        cluster = self.cluster
        hosts = [host.name for host in cluster.hosts]
        nodes = cluster.node_names()
        vms = [vm.name for vm in cluster.vms]
        if expectation.vm is not None and expectation.vm not in vms:
            add((*loc, "vm"), unknown_name("VM", expectation.vm, vms))
        for key in ("running_on", "not_running_on"):
            name = getattr(expectation, key)
            if name is not None and name != "any" and name not in hosts:
                add((*loc, key), unknown_name("host", name, hosts) + "; or any")
        if expectation.host is not None:
            if expectation.kind == "host_state":
                if expectation.host not in hosts:
                    add((*loc, "host"), unknown_name("host", expectation.host, hosts))
            elif expectation.host not in nodes:
                add(
                    (*loc, "host"),
                    unknown_name("host or witness", expectation.host, nodes, "hosts and witnesses"),
                )
        self._late(loc, "at", expectation.at, add)
        self._late(loc, "from", expectation.from_, add)
        self._late(loc, "to", expectation.to, add)
        self._late(loc, "by", expectation.by, add)
        if expectation.route is not None:
            routes = [r.name for r in cluster.alerts
                      if r.name and r.kind not in ("deadman", "log")]
            if expectation.route not in routes:
                add((*loc, "route"), unknown_name("alert route", expectation.route, routes,
                                                  "named alert routes (cluster.alerts)"))
        elif expectation.delivered is not None and not any(
                r.kind not in ("deadman", "log") for r in cluster.alerts):
            add((*loc, "delivered"), "the cluster has no alert route that delivers alerts "
                                     "(cluster.alerts): nothing can be delivered")


def parse_scenario(
    data: object, *, file: str | None = None, lines: LineMap | None = None
) -> Scenario:
    """Validate parsed scenario data; :class:`ConfigError` names file, line and field."""
    return validate_document(Scenario, data, file=file, lines=lines, what="scenario")


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and validate the scenario file *path*; :class:`ConfigError` on any problem."""
    data, lines = read_yaml(path)
    return parse_scenario(data, file=str(path), lines=lines)
