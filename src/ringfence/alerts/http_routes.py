"""The HTTP routes: webhook, Alertmanager v2, and the dead-man's ping (httpx).

Each call is one attempt, bounded by the route's `timeout` (connect, read and write); a status
outside 2xx, a refused connection, a DNS failure or a timeout raises `DeliveryError`. An HTTP
request is not atomic as seen from here: a timeout after the receiver took the body leaves it
delivered but unacknowledged, and the retry delivers it again, with the same idempotency key
(webhook) or the same labels (Alertmanager, which merges an alert it already has), so a receiver
that dedupes sees it once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx

from ringfence.alerts.models import Alert
from ringfence.alerts.routes import AlertMessage, DeliveryError, iso_time

__all__ = ["RESOLVE_AFTER", "ping_deadman", "send_alertmanager", "send_webhook", "sign"]

RESOLVE_AFTER = 3600.0
"""An Alertmanager alert ends this long after it started unless sent again."""


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Ringfence-Signature` header's value: ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def read_secret(path: str) -> bytes:
    """A secret file's content without its trailing newline. Raises DeliveryError."""
    try:
        return Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise DeliveryError(f"can not read secret file {path}: {exc.strerror or exc}") from None


def _post(route: Alert, url: str, body: bytes, headers: dict[str, str]) -> str:
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=route.timeout)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{url}: {type(exc).__name__}: {exc}") from None
    if not answer.is_success:
        raise DeliveryError(f"{url}: HTTP {answer.status_code} {answer.text[:200]}")
    return f"HTTP {answer.status_code}"


def send_webhook(route: Alert, message: AlertMessage) -> str:
    """POST the alert as JSON, with `Idempotency-Key` (the alert id; ``<id>:resolved`` for its
    resolution, whose body has the same ``id`` and ``status: resolved``),
    `X-Ringfence-Alert-Status` and, when the route has a `secret_file`,
    `X-Ringfence-Signature` over the exact body bytes."""
    assert route.url is not None
    body = json.dumps(message.body(), ensure_ascii=False, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": message.key,
               "X-Ringfence-Alert-Status": message.status, "User-Agent": "ringfence"}
    if route.secret_file:
        headers["X-Ringfence-Signature"] = sign(read_secret(route.secret_file), body)
    return _post(route, route.url, body, headers)


def alertmanager_alert(message: AlertMessage) -> dict[str, object]:
    """One alert of Alertmanager's v2 API. A firing alert ends `RESOLVE_AFTER` after it started
    (unless resolved before); a resolution is the same labels with ``endsAt`` the time the
    incident resolved, which resolves the alert in Alertmanager."""
    labels = {"alertname": "ringfence", "cluster": message.cluster,
              "severity": message.severity, "incident": message.id}
    if message.host:
        labels["host"] = message.host
    if message.vm:
        labels["vm"] = message.vm
    ends = message.ends if message.ends is not None else message.t + RESOLVE_AFTER
    return {"labels": labels, "annotations": {"summary": message.text,
                                              "raised_by": message.raised_by},
            "startsAt": iso_time(message.t), "endsAt": iso_time(ends)}


def send_alertmanager(route: Alert, message: AlertMessage) -> str:
    """POST ``[alert]`` to ``<url>/api/v2/alerts``."""
    assert route.url is not None
    body = json.dumps([alertmanager_alert(message)], ensure_ascii=False).encode()
    return _post(route, route.url.rstrip("/") + "/api/v2/alerts", body,
                 {"Content-Type": "application/json", "User-Agent": "ringfence"})


def ping_deadman(route: Alert) -> str:
    """GET the dead-man URL once. Raises DeliveryError."""
    assert route.url is not None
    try:
        answer = httpx.get(route.url, timeout=route.timeout,
                           headers={"User-Agent": "ringfence"})
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{route.url}: {type(exc).__name__}: {exc}") from None
    if not answer.is_success:
        raise DeliveryError(f"{route.url}: HTTP {answer.status_code}")
    return f"HTTP {answer.status_code}"
