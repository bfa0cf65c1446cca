"""What the cluster talks to: the coordination store, fence agents, the API (alert routes:
`ringfence.alerts.models`).

These sections only check their own values (endpoints, URLs, ``HOST:PORT``, durations); that
``store.members``, ``store.bootstrap`` and ``fencing`` name hosts of the cluster is checked by
:class:`~ringfence.config.cluster.ClusterConfig`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ringfence.config.fields import (
    MAX_HOSTS,
    MAX_PATH,
    MAX_WITNESSES,
    Endpoint,
    FilePath,
    HostPort,
    ParamValue,
    _Model,
)
from ringfence.units import Duration, duration_range


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
    # etcd's own timers (its --heartbeat-interval and --election-timeout), as the etcd
    # members run them: `ringfence check` says what they cost when the etcd leader dies with
    # its host (the store answers nobody while it elects, and every lease restarts at full
    # TTL). Not set: etcd's defaults, 100 ms and 1 s.
    heartbeat_interval: Annotated[Duration, duration_range(0.001, 10.0)] | None = None
    election_timeout: Annotated[Duration, duration_range(0.01, 60.0)] | None = None


class FenceConfig(_Model):
    """How to fence one host: a fence agent (``power`` in simulation) and its parameters."""

    agent: Annotated[str, Field(min_length=1, max_length=MAX_PATH)]
    params: dict[str, ParamValue] = Field(default_factory=dict, max_length=64)
    network: str | None = None
    delay: Annotated[Duration, duration_range(0.0, 300.0)] = 0.0
    duration: Annotated[Duration, duration_range(0.0, 300.0)] = 0.5
    # Simulation only: the agent answers only after this long, and then acts (unless stopped).
    hang: Annotated[Duration, duration_range(0.0, 3600.0)] | None = None


class ApiTLS(_Model):
    cert_file: FilePath | None = None
    key_file: FilePath | None = None


class ApiConfig(_Model):
    listen: HostPort = "127.0.0.1:8443"
    tls: ApiTLS | None = None
    tokens_file: FilePath | None = None
