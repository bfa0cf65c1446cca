"""The API's response and request bodies (pydantic): what `/api/v1/openapi.json` documents."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActionAnswer", "AlertDeliveryView", "AlertView", "ClusterView", "ForceStartBody",
    "HostView", "IncidentDetail", "IncidentSummary", "JournalEntry", "MaintenanceBody",
    "MigrateBody", "PeerLinks", "Problem", "StoreView", "VmImpactView", "VmView",
]


class Problem(BaseModel):
    """An error answer (401, 403, 404, 422, 503)."""

    detail: str


class StoreView(BaseModel):
    kind: str
    members: list[str]
    quorum: bool
    revision: int | None = None
    error: str | None = Field(None, description="why the store does not answer")


class ClusterView(BaseModel):
    name: str
    store: StoreView
    leader: str | None
    timing: dict[str, float | None]
    hosts: int
    vms: int
    open_incidents: int


class PeerLinks(BaseModel):
    """One host's view of one peer: on which heartbeat networks it hears it."""

    state: str
    alive: list[str]
    dead: list[str]


class HostView(BaseModel):
    name: str
    state: str
    lease_age_s: float | None
    incarnation: int | None
    health: dict[str, Any] | None
    links: dict[str, PeerLinks]
    leader: bool
    failsafe: bool = Field(description="the host's journal says it is in failsafe")


class JournalEntry(BaseModel):
    """One journal line (its typed fields; more fields than these may be present)."""

    model_config = ConfigDict(extra="allow")

    t: float
    kind: str
    by: str | None = None
    seq: int | None = None
    host: str | None = None
    vm: str | None = None
    text: str | None = None
    request: str | None = None
    operator: str | None = None


class VmView(BaseModel):
    name: str
    host: str | None
    token: int | None
    state: str
    moved_from: str | None = Field(description="the host it ran on before its last move")
    last_verified: float | None = Field(description="when it last answered its check")
    history: list[JournalEntry] = Field(default_factory=list)


class VmImpactView(BaseModel):
    vm: str
    from_host: str | None
    to_host: str | None
    downtime_s: float
    still_down: bool


class IncidentSummary(BaseModel):
    id: str
    severity: str
    status: str
    title: str
    opened_at: float
    resolved_at: float | None
    hosts: list[str]
    vms: list[VmImpactView]
    report_md: str
    report_html: str


class IncidentDetail(IncidentSummary):
    evidence: list[dict[str, Any]]
    operator_actions: list[dict[str, Any]]
    waiting: list[str]


class MigrateBody(BaseModel):
    to: str = Field(description="the host to move the VM to")


class ForceStartBody(BaseModel):
    host: str = Field(description="where the VM must run")
    confirm_down: list[str] = Field(default_factory=list,
                                    description="hosts the operator confirms are off")


class MaintenanceBody(BaseModel):
    on: bool = Field(description="true: drain the host; false: back in service")


class ActionAnswer(BaseModel):
    """The outcome of an operator request: `done`, `refused` (with the reason), or `accepted` /
    `pending` with the request id to poll at `poll`."""

    request: str | None
    status: Literal["done", "refused", "accepted", "pending"]
    operator: str
    message: str
    reason: str | None = None
    poll: str | None = None
    events: list[JournalEntry] = Field(default_factory=list)


class AlertDeliveryView(BaseModel):
    """Where one alert stands on one route."""

    route: str = Field(description="the route's name (`alerts[].name`, else kind and address)")
    method: str = Field(description="the route's kind: webhook, alertmanager, email, command")
    state: Literal["delivered", "failed", "rate_limited", "pending", "unknown"] = Field(
        description="delivered / failed (after its retries) / rate_limited: journaled by the "
                    "worker that tried; pending: owed in the store's outbox; unknown: "
                    "neither (no outcome journaled yet, or it is older than the journal kept)")
    detail: str | None = Field(None, description="the receiver's answer, or why it failed")
    attempts: int | None = None
    t: float | None = Field(None, description="when the outcome was journaled")


class AlertView(BaseModel):
    """An alert raised (`alert_sent`) and its delivery by every route that takes it."""

    t: float
    severity: str
    host: str | None
    vm: str | None
    text: str
    deliveries: list[AlertDeliveryView]
