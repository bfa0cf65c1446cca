"""The ``monitors:`` section of the cluster file: the cluster's monitoring systems, watched.

Each item names one system and exactly one way to check it:

* ``http: URL``: a GET that answers 2xx within ``timeout`` (Alertmanager's ``/-/healthy``,
  Prometheus's ``/-/ready``, a Nagios or Zabbix front page);
* ``tcp: HOST:PORT``: a TCP connection accepted within ``timeout``;
* ``vm: NAME``: a VM of the cluster, up while the store places it on a host that holds its
  lease (ringfence's own view: a hung guest on a live host is not seen; give an ``http`` or
  ``tcp`` monitor for that).

``every`` (5 s to 1 day, default 1 min) is the schedule, ``timeout`` (0.1 s to 1 min, default
5 s, less than ``every``) bounds one check, ``failures`` (1 to 10, default 2) checks in a row
must fail before the monitor counts as down (one lost packet pages nobody), ``severity``
(``warning`` or ``critical``, default) is the alert's. ``routes`` names the alert routes (their
``name``) that carry this monitor's alert; without it, every route that does not depend on the
monitored system (whose address is not the monitor's host or VM) carries it, so that the alert
about a silent Alertmanager does not go to that Alertmanager.

Route self-tests are a field of each route (``self_test: {every, send}``, `models.Alert`).
Like `models`, this imports nothing of ``ringfence.config``; the cluster file's cross-checks
(route and VM names) are in `config.cluster`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringfence.alerts.models import URL, HostPort
from ringfence.units import Duration, duration_range

__all__ = ["MAX_MONITORS", "Monitor"]

MAX_MONITORS = 64

RouteName = Annotated[str, Field(min_length=1, max_length=63)]


class Monitor(BaseModel):
    """One monitored system (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^\s/]+$")]
    http: URL | None = None
    tcp: HostPort | None = None
    vm: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    every: Annotated[Duration, duration_range(5.0, 86400.0)] = 60.0
    timeout: Annotated[Duration, duration_range(0.1, 60.0)] = 5.0
    failures: int = Field(default=2, ge=1, le=10)
    severity: Literal["warning", "critical"] = "critical"
    routes: list[RouteName] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _one_check(self) -> Self:
        given = [k for k in ("http", "tcp", "vm") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a monitor needs exactly one of http, tcp or vm"
                             + (f" (it has {' and '.join(given)})" if given else ""))
        if self.timeout >= self.every:
            raise ValueError(f"timeout ({self.timeout:g}s) must be less than every "
                             f"({self.every:g}s)")
        return self

    @property
    def method(self) -> str:
        """``http``, ``tcp`` or ``vm``."""
        return "http" if self.http else "tcp" if self.tcp else "vm"

    @property
    def target(self) -> str:
        """What is checked: the URL, ``HOST:PORT`` or VM name."""
        return self.http or self.tcp or self.vm or ""
