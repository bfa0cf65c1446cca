"""VMs and what their recovery needs: datastores (and their write probes), groups, the check
that a recovered VM answers (``verify``), and the recovery ``policy``.

Model validators raise :class:`~ringfence.config.problems.FieldProblems` for a probe or a
verify check given in a shape that can not work (a command probe without argv, no check or two
checks at once). References between VMs, hosts, groups and datastores are checked by
:class:`~ringfence.config.cluster.ClusterConfig`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from ringfence.config.fields import MAX_DATASTORES, MAX_HOSTS, MAX_VMS, FilePath, Name, Text, _Model
from ringfence.config.problems import FieldProblems
from ringfence.units import Duration, Size, duration_range, number_range, size_range


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
