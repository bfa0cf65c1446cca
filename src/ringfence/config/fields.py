"""Bounds on every input and the field types that several sections share.

The ``MAX_*`` constants are the bounds (docs/limits.md explains each figure); the ``Annotated``
types (:data:`Name`, :data:`IPAddress`, :data:`URL`, :data:`Endpoint`, :data:`HostPort`,
:data:`Hypervisor`, :data:`ParamValue`, ...) check one value each and raise :class:`ValueError`
with a message that says what is expected, which pydantic reports at the field's path.
``_Model`` is the base of every section: unknown fields are refused, instances are frozen.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ringfence.alerts.models import check_host_port, check_url
from ringfence.errors import describe_value

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


URL = Annotated[str, AfterValidator(check_url)]


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
    return check_host_port(value, "10.1.2.3:443")


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
