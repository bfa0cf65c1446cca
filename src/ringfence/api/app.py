"""The operator's HTTP surface: `create_app(source)` builds the FastAPI app every agent serves.

- ``/api/v1/...``: the cluster, hosts, VMs, incidents (with their reports), the recent alerts
  with their delivery by every route, the journal and its live stream (server-sent events),
  and the operator actions (VM start, stop, migrate,
  forced start; host maintenance on and off). OpenAPI at ``/api/v1/openapi.json``.
- ``/metrics``: Prometheus metrics of the current snapshot (`api.metrics`).
- ``/``: the dashboard (`api.dashboard`), rendered on the server, updated live over SSE.

Reads need no token. Every action needs a bearer token (`api.auth`) with the role it needs
(``operator``; ``admin`` for a forced start): none is 401, one too weak is 403, and each such
refusal is journaled (`operator_refused`, with the token's user when there is one). An action is
the same request the CLI writes (`ringfence.operator`), audited with the token's user as the
operator, and its answer is its outcome (`ringfence.outcomes`): ``done`` (200), ``refused``
with the reason (409), or ``accepted`` / ``pending`` (202) with the request id to poll at
``/api/v1/requests/{id}``. The wait for the outcome is bounded by the ``wait`` parameter
(seconds, default 10, at most 30; 0 answers at once).

Failure semantics: an unreachable store never makes a read fail: the cluster says
``quorum: false`` and why; an action then is refused (409) with the store's error. Unknown
hosts, VMs, incidents: 404.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from ringfence.api.auth import Identity, Role, Tokens, role_allows
from ringfence.api.metrics import HeartbeatSnapshots
from ringfence.api.models import (
    ActionAnswer,
    AlertView,
    ClusterView,
    ForceStartBody,
    HostView,
    IncidentDetail,
    IncidentSummary,
    JournalEntry,
    MaintenanceBody,
    MigrateBody,
    Problem,
    VmView,
)
from ringfence.api.source import ClusterSource, entry_key
from ringfence.api.views import Snapshots, incident_summary, journal_entry
from ringfence.errors import ConfigError
from ringfence.journal.incidents import Incident
from ringfence.operator import (
    Submitted,
    submit_force,
    submit_maintenance,
    submit_migrate,
    submit_stopped,
)
from ringfence.outcomes import Outcome, classify, wait_for_outcome

__all__ = ["API", "create_app"]

API = "/api/v1"
STATIC = Path(__file__).with_name("static")
MAX_WAIT = 30.0
_STATUS_CODES = {"done": 200, "refused": 409, "accepted": 202, "pending": 202}
_bearer = HTTPBearer(auto_error=False, description="a token of api.tokens_file")
_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": ActionAnswer, "description": "accepted or pending: poll `poll`"},
    409: {"model": ActionAnswer, "description": "refused, with the reason"},
    401: {"model": Problem, "description": "no valid token"},
    403: {"model": Problem, "description": "the token's role may not do this"},
    404: {"model": Problem, "description": "unknown VM or host"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem}}
# The same for a route whose own answer is not JSON (a report): its 404 still is.
_NOT_FOUND_JSON: dict[int | str, dict[str, Any]] = {404: {
    "description": "unknown incident",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
Wait = Annotated[float, Query(ge=0, le=MAX_WAIT,
                              description="seconds to wait for the outcome (0: at once)")]


def create_app(source: ClusterSource, *, tokens: Tokens | None = None,
               title: str = "ringfence",
               heartbeats: HeartbeatSnapshots | None = None) -> FastAPI:
    """The app over `source`; `tokens` None: no tokens, every action is 401. `heartbeats`:
    the refused-heartbeat counters of the agent serving it, for `/metrics`."""
    tokens = tokens or Tokens(None)
    snapshots = Snapshots(source)
    app = FastAPI(title=f"{title} API", version="1",
                  description="ringfence's cluster view and operator actions",
                  openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs", redoc_url=None)
    app.state.source = source
    app.state.snapshots = snapshots
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------ access
    def allowed(credentials: HTTPAuthorizationCredentials | None, needed: Role, what: str,
                **subject: str) -> Identity:
        identity = tokens.identify(credentials.credentials if credentials else None)
        if identity is None:
            why = "no token" if credentials is None else "an unknown token"
            source.record("operator_refused", reason=f"API: {what} refused: {why}", **subject)
            raise HTTPException(401, f"{what} needs a bearer token ({why} given)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not role_allows(identity.role, needed):
            source.record("operator_refused", operator=identity.user,
                          reason=f"API: {what} refused: {identity.user} is {identity.role}, "
                                 f"{needed} needed", **subject)
            raise HTTPException(403, f"{what} needs the {needed} role; {identity.user} is "
                                     f"{identity.role}")
        return identity

    def act(identity: Identity, submit: Callable[[str], Submitted], wait: float
            ) -> JSONResponse:
        try:
            submitted = submit(identity.user)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from None
        if submitted.refused is not None:
            source.record("operator_refused", operator=identity.user, request=None,
                          reason=f"API: {submitted.refused}")
            answer = ActionAnswer(request=None, status="refused", operator=identity.user,
                                  message=submitted.message, reason=submitted.refused)
        elif submitted.request is None:  # nothing to do
            answer = ActionAnswer(request=None, status="done", operator=identity.user,
                                  message=submitted.message)
        else:
            outcome = (wait_for_outcome(submitted.request, source.journal, timeout=wait)
                       if wait > 0 else Outcome(submitted.request, "pending"))
            answer = _answer(outcome, identity.user, submitted.message)
        return JSONResponse(answer.model_dump(mode="json"),
                            status_code=_STATUS_CODES[answer.status])

    # ------------------------------------------------------------------ reads
    @app.get(f"{API}/cluster", response_model=ClusterView, tags=["read"])
    def cluster() -> ClusterView:
        return snapshots.take().cluster(source)

    @app.get(f"{API}/hosts", response_model=list[HostView], tags=["read"])
    def hosts() -> list[HostView]:
        return snapshots.take().hosts(source)

    @app.get(f"{API}/hosts/{{host}}", response_model=HostView, responses=_NOT_FOUND,
             tags=["read"])
    def host(host: str) -> HostView:
        for view in snapshots.take().hosts(source):
            if view.name == host:
                return view
        raise HTTPException(404, f"unknown host {host!r}")

    @app.get(f"{API}/vms", response_model=list[VmView], tags=["read"])
    def vms() -> list[VmView]:
        return snapshots.take().vms(source)

    @app.get(f"{API}/vms/{{vm}}", response_model=VmView, responses=_NOT_FOUND, tags=["read"])
    def vm(vm: str) -> VmView:
        for view in snapshots.take().vms(source, history=True):
            if view.name == vm:
                return view
        raise HTTPException(404, f"unknown VM {vm!r}")

    @app.get(f"{API}/incidents", response_model=list[IncidentSummary], tags=["read"])
    def incidents(open_only: Annotated[bool, Query(alias="open")] = False
                  ) -> list[IncidentSummary]:
        found = snapshots.take().incidents
        return [incident_summary(i) for i in found if i.open or not open_only]

    def find(incident_id: str) -> tuple[Incident, list[Incident]]:
        found = snapshots.take().incidents
        for incident in found:
            if incident.id == incident_id:
                return incident, found
        raise HTTPException(404, f"unknown incident {incident_id!r}")

    @app.get(f"{API}/incidents/{{incident_id}}", response_model=IncidentDetail,
             responses=_NOT_FOUND, tags=["read"])
    def incident(incident_id: str) -> IncidentDetail:
        from ringfence.journal.incidents import incident_to_dict

        found, _ = find(incident_id)
        document = incident_to_dict(found, with_events=False)
        return IncidentDetail(**incident_summary(found).model_dump(),
                              evidence=document["evidence"],
                              operator_actions=document["operator_actions"],
                              waiting=document["waiting"])

    def context(found: list[Incident]) -> Any:
        from ringfence.journal.report import ReportContext

        return ReportContext(cluster=source.config.name, simulated=False,
                             source="the hosts' journals (the copy in the store)",
                             config=source.config, incidents=tuple(found))

    @app.get(f"{API}/incidents/{{incident_id}}/report.md", response_class=PlainTextResponse,
             responses={200: {"content": {"text/markdown": {}}}, **_NOT_FOUND_JSON},
             tags=["read"])
    def report_md(incident_id: str) -> PlainTextResponse:
        from ringfence.journal.report import render_markdown

        found, every = find(incident_id)
        return PlainTextResponse(render_markdown(found, context(every)),
                                 media_type="text/markdown; charset=utf-8")

    @app.get(f"{API}/incidents/{{incident_id}}/report.html", response_class=HTMLResponse,
             responses=_NOT_FOUND_JSON, tags=["read"])
    def report_html(incident_id: str) -> HTMLResponse:
        from ringfence.journal.report import render_html

        found, every = find(incident_id)
        return HTMLResponse(render_html(found, context(every)))

    @app.get(f"{API}/alerts", response_model=list[AlertView], tags=["read"],
             summary="recent alerts and their delivery by every route")
    def alerts(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[AlertView]:
        return snapshots.take().alerts(source, limit)

    @app.get(f"{API}/journal", response_model=list[JournalEntry], tags=["read"])
    def journal(since: Annotated[float | None, Query(
                    description="seconds since the epoch; negative: that many seconds ago")
                ] = None,
                kind: Annotated[str | None, Query(
                    description="event kinds, separated by commas")] = None,
                limit: Annotated[int, Query(ge=1, le=20_000)] = 1000) -> list[JournalEntry]:
        entries = source.journal()
        if since is not None:
            start = time.time() + since if since < 0 else since
            entries = [e for e in entries if float(e.get("t", 0) or 0) >= start]
        if kind:
            kinds = {k.strip() for k in kind.split(",") if k.strip()}
            entries = [e for e in entries if e.get("kind") in kinds]
        return [journal_entry(e) for e in entries[-limit:]]

    @app.get(f"{API}/events", tags=["read"],
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "`journal` events (one journal line each, JSON) "
                                             "and a `tick` every 2 s"}})
    async def events(request: Request,
                     since: Annotated[float | None, Query(
                         description="also send entries from this time on (epoch s)")] = None,
                     duration: Annotated[float | None, Query(
                         gt=0, description="end the stream after this many seconds")] = None
                     ) -> Response:
        from fastapi.responses import StreamingResponse

        return StreamingResponse(_stream(source, request, since, duration),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.get(f"{API}/requests/{{request_id}}", response_model=ActionAnswer, tags=["actions"])
    def request_outcome(request_id: str) -> ActionAnswer:
        outcome = classify(request_id, source.journal())
        operator = next((str(e["operator"]) for e in outcome.events if e.get("operator")), "")
        return _answer(outcome, operator, f"request {request_id}: {outcome.status}")

    # ------------------------------------------------------------------ actions
    def vm_action(name: str, needed: Role, what: str,
                  submit: Callable[[str, str], Submitted]) -> None:
        @app.post(f"{API}/vms/{{vm}}/{name}", response_model=ActionAnswer,
                  responses=_ACTION_RESPONSES, tags=["actions"], name=f"vm_{name}",
                  summary=f"{what} (role {needed})")
        def action(vm: str, credentials: Credentials, wait: Wait = 10.0) -> JSONResponse:
            identity = allowed(credentials, needed, f"{what} of {vm}", vm=vm)
            return act(identity, lambda who: submit(vm, who), wait)

    vm_action("start", "operator", "start",
              lambda vm, who: submit_stopped(source.config, source.store, vm, False, who))
    vm_action("stop", "operator", "stop",
              lambda vm, who: submit_stopped(source.config, source.store, vm, True, who))

    @app.post(f"{API}/vms/{{vm}}/migrate", response_model=ActionAnswer,
              responses=_ACTION_RESPONSES, tags=["actions"],
              summary="live migration to another host (role operator)")
    def migrate(vm: str, body: MigrateBody, credentials: Credentials,
                wait: Wait = 10.0) -> JSONResponse:
        identity = allowed(credentials, "operator", f"migration of {vm}", vm=vm)
        return act(identity,
                   lambda who: submit_migrate(source.config, source.store, vm, body.to, who),
                   wait)

    @app.post(f"{API}/vms/{{vm}}/force-start", response_model=ActionAnswer,
              responses=_ACTION_RESPONSES, tags=["actions"],
              summary="forced start on a host (role admin)")
    def force_start(vm: str, body: ForceStartBody, credentials: Credentials,
                    wait: Wait = 10.0) -> JSONResponse:
        identity = allowed(credentials, "admin", f"forced start of {vm}", vm=vm)
        return act(identity, lambda who: submit_force(source.config, source.store, vm,
                                                      body.host, body.confirm_down, who), wait)

    @app.post(f"{API}/hosts/{{host}}/maintenance", response_model=ActionAnswer,
              responses=_ACTION_RESPONSES, tags=["actions"],
              summary="maintenance on (drain) or off (role operator)")
    def maintenance(host: str, body: MaintenanceBody, credentials: Credentials,
                    wait: Wait = 10.0) -> JSONResponse:
        identity = allowed(credentials, "operator",
                           f"maintenance {'on' if body.on else 'off'} of {host}", host=host)
        return act(identity, lambda who: submit_maintenance(source.config, source.store, host,
                                                            body.on, who), wait)

    # ------------------------------------------------------------------ metrics, dashboard
    from ringfence.api.dashboard import install_dashboard
    from ringfence.api.metrics import install_metrics

    install_metrics(app, source, snapshots, heartbeats)
    install_dashboard(app, source, snapshots)
    return app


def _answer(outcome: Outcome, operator: str, message: str) -> ActionAnswer:
    reason = outcome.reason if outcome.status == "refused" else None
    if outcome.status == "done" and outcome.reason:
        message = f"{message}: done: {outcome.reason}"
    elif reason:
        message = f"refused: {reason}"
    return ActionAnswer(request=outcome.request, status=outcome.status, operator=operator,
                        message=message, reason=reason,
                        poll=(f"{API}/requests/{outcome.request}"
                              if outcome.status in ("accepted", "pending") else None),
                        events=[journal_entry(dict(e)) for e in outcome.events])


async def _stream(source: ClusterSource, request: Request, since: float | None,
                  duration: float | None) -> AsyncIterator[str]:
    """New journal lines as `journal` events; entries that reach the store late (another
    host's mirror) are still sent once: what was sent is remembered for a minute."""
    started = time.monotonic()
    horizon = since if since is not None else time.time()
    seen: set[tuple[float, str, int, str]] = set()
    last_tick = 0.0
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        entries = await run_in_threadpool(source.journal)
        for entry in entries:
            key = entry_key(entry)
            if key[0] < horizon or key in seen:
                continue
            seen.add(key)
            yield f"event: journal\ndata: {json.dumps(entry, ensure_ascii=False)}\n\n"
        now = time.monotonic()
        if now - last_tick >= 2.0:
            last_tick = now
            yield f"event: tick\ndata: {time.time():.3f}\n\n"
        cutoff = time.time() - 60.0
        horizon = max(horizon, cutoff)
        seen = {k for k in seen if k[0] >= cutoff}
        if duration is not None and now - started >= duration:
            return
        await asyncio.sleep(0.5)
