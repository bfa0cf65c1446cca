"""The ``alerts:`` section of the cluster file: one route per item.

Kinds:

* ``alertmanager``: ``url`` is the Alertmanager's base URL (``/api/v2/alerts`` is appended);
* ``webhook``: ``url`` receives a JSON body, signed with ``secret_file``'s content when given;
* ``email``: ``smtp`` (host:port), ``starttls`` (default on), ``username`` + ``password_file``
  for auth, ``from`` and ``to``;
* ``command``: ``command`` is an argv list, run with the alert in ``RINGFENCE_ALERT_*``
  environment variables and as JSON on stdin, killed after ``timeout``;
* ``deadman``: ``url`` is pinged every ``every`` (an outside watcher pages when pings stop);
* ``log``: the journal only (every alert is journaled anyway).

Every route but ``deadman`` takes ``min_severity`` (``info`` < ``warning`` < ``critical``) and
``rate_limit: {count, per}`` (at most ``count`` alerts per ``per``; the rest are journaled as
``alert_failed`` with the reason, never queued for later) and ``self_test: {every, send}``: the
leader tests the route every ``every`` (1 min to 1 day); ``send: reach`` (default) only checks
that its receiver answers (an HTTP route's host accepts a connection, Alertmanager's
``/-/healthy`` answers, the SMTP server greets and says NOOP, the command is an executable
file), ``send: info`` delivers a test alert of severity ``info`` (only for a route whose
``min_severity`` is ``info``: it takes such alerts). A failed test is alerted through the
other routes. The models import nothing of
``ringfence.config`` (the config loader imports them, and takes its URL and ``HOST:PORT``
checks from here); a mistake is a
pydantic error naming the field, which the loader reports with file, line and field path.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ringfence.units import Duration, duration_range

__all__ = ["SEVERITIES", "URL", "Alert", "HostPort", "RateLimit", "SelfTest", "Severity",
           "check_host_port", "check_url", "severity_rank"]

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

MAX_URL = 2048
MAX_PATH = 4096


def severity_rank(severity: str) -> int:
    """0 info, 1 warning, 2 critical; an unknown severity counts as critical (never dropped
    by a filter because of a typo in the code that raised it)."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        return len(SEVERITIES) - 1


def check_url(value: str) -> str:
    """An http(s) URL with a host; ValueError saying what is expected."""
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


def check_host_port(value: str, example: str = "smtp.example:587") -> str:
    """``HOST:PORT`` with a port from 1 to 65535; ValueError naming `example` otherwise."""
    host, sep, port = value.rpartition(":")
    if (not sep or not host or len(value) > MAX_URL or any(ch.isspace() for ch in value)
            or not port.isdigit() or not 1 <= int(port) <= 65535):
        raise ValueError(f"expected HOST:PORT such as {example}, got {value[:80]!r}")
    return value


def _check_address(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() or ch in "<>,;" for ch in value):
        raise ValueError(f"expected an e-mail address such as oncall@example.org, "
                         f"got {value[:80]!r}")
    return value


URL = Annotated[str, AfterValidator(check_url)]
HostPort = Annotated[str, AfterValidator(check_host_port)]
Address = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_check_address)]
FilePath = Annotated[str, Field(min_length=1, max_length=MAX_PATH)]
Arg = Annotated[str, Field(max_length=MAX_PATH)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SelfTest(_Model):
    """A route's scheduled self-test (see the module docstring)."""

    every: Annotated[Duration, duration_range(60.0, 86400.0)] = 3600.0
    send: Literal["reach", "info"] = "reach"


class RateLimit(_Model):
    """At most `count` alerts per `per` on one route."""

    count: int = Field(ge=1, le=100_000)
    per: Annotated[Duration, duration_range(1.0, 86400.0)] = 60.0


# The fields each kind needs, and the ones it may use: a field another kind uses is refused
# (a `to:` on a webhook is a mistake, not an option).
_NEEDS: dict[str, tuple[str, ...]] = {
    "alertmanager": ("url",),
    "webhook": ("url",),
    "email": ("smtp", "to"),
    "command": ("command",),
    "deadman": ("url",),
    "log": (),
}
_ALLOWS: dict[str, frozenset[str]] = {
    "alertmanager": frozenset({"url"}),
    "webhook": frozenset({"url", "secret_file"}),
    "email": frozenset({"smtp", "starttls", "username", "password_file", "from_", "to"}),
    "command": frozenset({"command"}),
    "deadman": frozenset({"url", "every"}),
    "log": frozenset(),
}
_SPECIFIC = frozenset().union(*_ALLOWS.values())
_YAML_NAME = {"from_": "from"}


class Alert(_Model):
    """An alert route (see the module docstring). ``name`` names it in the journal
    (default: the kind and its address)."""

    kind: Literal["alertmanager", "webhook", "email", "command", "deadman", "log"]
    name: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    min_severity: Severity = "info"
    rate_limit: RateLimit | None = None
    self_test: SelfTest | None = None
    timeout: Annotated[Duration, duration_range(0.1, 300.0)] = 10.0
    retries: int = Field(default=3, ge=0, le=20)
    url: URL | None = None
    secret_file: FilePath | None = None
    smtp: HostPort | None = None
    starttls: bool = True
    username: Annotated[str, Field(min_length=1, max_length=254)] | None = None
    password_file: FilePath | None = None
    from_: Address | None = Field(default=None, alias="from")
    to: list[Address] = Field(default_factory=list, max_length=64)
    command: list[Arg] = Field(default_factory=list, max_length=256)
    every: Annotated[Duration, duration_range(1.0, 86400.0)] | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        missing = [_YAML_NAME.get(f, f) for f in _NEEDS[self.kind] if not getattr(self, f)]
        if missing:
            raise ValueError(f"a {self.kind} route needs {' and '.join(missing)}")
        foreign = sorted(_YAML_NAME.get(f, f) for f in self.model_fields_set
                         if f in _SPECIFIC and f not in _ALLOWS[self.kind])
        if foreign:
            takes = ", ".join(sorted(_YAML_NAME.get(f, f) for f in _ALLOWS[self.kind]))
            raise ValueError(f"{', '.join(foreign)} is not a field of a {self.kind} route "
                             f"(it takes {takes or 'no address fields'})")
        if self.command and not self.command[0]:
            raise ValueError("command: the program (first item) is empty")
        if self.self_test is not None and self.kind in ("deadman", "log"):
            raise ValueError(f"self_test: a {self.kind} route has no receiver to test "
                             f"(a deadman route's pings are its test)")
        if (self.self_test is not None and self.self_test.send == "info"
                and self.min_severity != "info"):
            raise ValueError(f"self_test: send info needs min_severity info (this route takes "
                             f"{self.min_severity} and above: use send reach)")
        if bool(self.username) != bool(self.password_file):
            raise ValueError("username and password_file go together (SMTP auth needs both)")
        return self

    @property
    def interval(self) -> float:
        """A deadman route's ping interval (default one minute)."""
        return self.every if self.every is not None else 60.0

    @property
    def label(self) -> str:
        """How the journal names this route: its name, or its kind and address."""
        if self.name:
            return self.name
        where = self.url or self.smtp or (" ".join(self.command[:1]) if self.command else "")
        return f"{self.kind} {where}".strip()
