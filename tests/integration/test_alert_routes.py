"""Each alert route against a real receiver started here on loopback: an SMTP server
(aiosmtpd, with STARTTLS and auth), a command, Debian's prometheus-alertmanager, a webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import WebhookReceiver
from ringfence.alerts.models import Alert
from ringfence.alerts.routes import AlertMessage, deliver

MESSAGE = AlertMessage("0f3c9a", "critical", "hv2 fenced by power off", "hv2", None, "prod",
                       "hv1", 1_790_000_000.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def route(**fields: Any) -> Alert:
    return Alert.model_validate({"retries": 0, "timeout": "5s", **fields})


# ----------------------------------------------------------------------------- webhook
def test_webhook_signs_the_body_and_sends_the_idempotency_key(tmp_path: Path) -> None:
    receiver = WebhookReceiver(secret=b"k3y")
    try:
        (tmp_path / "secret").write_bytes(b"k3y\n")
        hook = route(kind="webhook", url=receiver.url, secret_file=str(tmp_path / "secret"))
        assert deliver(hook, MESSAGE).delivered
        assert deliver(hook, MESSAGE).delivered  # a redelivery: same key
        assert receiver.alerts["0f3c9a"]["text"] == MESSAGE.text
        assert receiver.duplicates == 1 and receiver.bad_signatures == 0
        (tmp_path / "secret").write_bytes(b"wrong")
        failed = deliver(hook, MESSAGE)
        assert not failed.delivered and "HTTP 401" in failed.detail
    finally:
        receiver.close()


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    from ringfence.alerts.http_routes import sign

    body = b'{"a": 1}'
    assert sign(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- e-mail
class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing: it makes the SMTP server's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def smtp_server(tls_files: tuple[Path, Path]) -> Iterator[tuple[int, Inbox]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server: Any, session: Any, envelope: Any, mechanism: str,
              data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"ringfence", b"pa55")
        return AuthResult(success=ok)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=check, auth_required=True)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_email_over_starttls_with_auth(smtp_server: tuple[int, Inbox], tmp_path: Path,
                                       tls_files: tuple[Path, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))  # trust the test's certificate
    port, inbox = smtp_server
    (tmp_path / "pw").write_text("pa55\n")
    mail = route(kind="email", smtp=f"localhost:{port}", username="ringfence",
                 password_file=str(tmp_path / "pw"), to=["oncall@example.org"],
                 **{"from": "rf@example.org"})
    result = deliver(mail, MESSAGE)
    assert result.delivered, result.detail
    sender, recipients, content = inbox.messages[0]
    assert sender == "rf@example.org" and recipients == ["oncall@example.org"]
    assert b"Subject: [ringfence critical] hv2 fenced by power off" in content
    assert b"X-Ringfence-Alert-Id: 0f3c9a" in content
    (tmp_path / "pw").write_text("wrong")
    refused = deliver(mail.model_copy(update={"timeout": 1.0}), MESSAGE)
    assert not refused.delivered and refused.detail.startswith(f"smtp localhost:{port}: ")
    assert len(inbox.messages) == 1


def test_email_without_starttls_is_refused_by_a_server_that_requires_it(
        smtp_server: tuple[int, Inbox]) -> None:
    port, inbox = smtp_server
    plain = route(kind="email", smtp=f"localhost:{port}", starttls=False, to=["a@b.org"])
    result = deliver(plain, MESSAGE)
    assert not result.delivered and inbox.messages == []


# ----------------------------------------------------------------------------- command
def test_command_gets_the_alert_in_its_environment_and_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = tmp_path / "page"
    script.write_text(f"#!/bin/sh\n{{ env | grep ^RINGFENCE_ALERT_ | sort; cat; }} > {out}\n")
    script.chmod(0o755)
    assert deliver(route(kind="command", command=[str(script)]), MESSAGE).delivered
    text = out.read_text()
    assert "RINGFENCE_ALERT_ID=0f3c9a" in text and "RINGFENCE_ALERT_HOST=hv2" in text
    assert "RINGFENCE_ALERT_SEVERITY=critical" in text
    assert json.loads(text.splitlines()[-1])["text"] == MESSAGE.text


def test_command_failure_and_timeout(tmp_path: Path) -> None:
    failed = deliver(route(kind="command", command=["sh", "-c", "echo no >&2; exit 3"]),
                     MESSAGE)
    assert not failed.delivered and failed.detail == "sh exited 3: no"
    slow = deliver(route(kind="command", command=["sleep", "5"], timeout="200ms"), MESSAGE)
    assert not slow.delivered and "killed" in slow.detail


# ----------------------------------------------------------------------------- Alertmanager
@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("prometheus-alertmanager is missing: scripts/dev-setup installs it")
    config = tmp_path / "am.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "alertmanager did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_alertmanager_receives_the_alert_with_its_labels(alertmanager: str) -> None:
    now = AlertMessage(MESSAGE.id, "critical", MESSAGE.text, "hv2", "erp", "prod", "hv1",
                       time.time())
    am = route(kind="alertmanager", url=alertmanager)
    assert deliver(am, now).delivered
    assert deliver(am, now).delivered  # the same labels: one alert in Alertmanager
    alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert len(alerts) == 1
    labels = alerts[0]["labels"]
    assert labels == {"alertname": "ringfence", "cluster": "prod", "host": "hv2", "vm": "erp",
                      "severity": "critical", "incident": MESSAGE.id}
    assert alerts[0]["annotations"]["summary"] == MESSAGE.text
    assert alerts[0]["status"]["state"] == "active"


def test_alertmanager_resolves_the_alert_with_the_same_labels(alertmanager: str) -> None:
    firing = AlertMessage("9e1d", "critical", "hv2 fenced", "hv2", None, "prod", "hv1",
                          time.time() - 10)
    am = route(kind="alertmanager", url=alertmanager)
    assert deliver(am, firing).delivered
    active = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert [a["status"]["state"] for a in active] == ["active"]
    resolved = firing.resolution(time.time() - 1, "incident INC-0001 resolved, verified")
    assert deliver(am, resolved).delivered
    left = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert [a for a in left if a["status"]["state"] == "active"] == []


# ----------------------------------------------------------------------------- resolutions
def test_each_route_tells_a_resolution_apart_by_key_and_status(tmp_path: Path) -> None:
    from ringfence.alerts.command import alert_environment
    from ringfence.alerts.mail import build_email

    resolved = MESSAGE.resolution(MESSAGE.t + 60, "incident INC-0001 resolved, verified")
    assert resolved.id == MESSAGE.id and resolved.key == f"{MESSAGE.id}:resolved"
    receiver = WebhookReceiver()
    try:
        hook = route(kind="webhook", url=receiver.url)
        assert deliver(hook, MESSAGE).delivered and deliver(hook, resolved).delivered
        assert deliver(hook, resolved).delivered  # a redelivery of the resolution: deduped
        body = receiver.alerts[f"{MESSAGE.id}:resolved"]
        assert body["id"] == MESSAGE.id and body["status"] == "resolved"
        assert body["text"].startswith("resolved (incident INC-0001")
        assert receiver.alerts[MESSAGE.id]["status"] == "firing" and receiver.duplicates == 1
    finally:
        receiver.close()
    env = alert_environment(resolved)
    assert env["RINGFENCE_ALERT_STATUS"] == "resolved" and env["RINGFENCE_ALERT_ID"] == "0f3c9a"
    assert env["RINGFENCE_ALERT_ENDS"].endswith("Z")
    mail = build_email(route(kind="email", smtp="mx:25", to=["a@b.org"]), resolved)
    assert mail["Subject"].startswith("[ringfence resolved]")
    assert mail["In-Reply-To"] == "<0f3c9a@ringfence.prod>"
    assert mail["Message-ID"] == "<0f3c9a.resolved@ringfence.prod>"


def test_the_leader_resolves_an_alert_in_alertmanager(alertmanager: str, tmp_path: Path) -> None:
    """Through the outbox: the alert fires in Alertmanager, its VM runs elsewhere, the leader's
    resolution ends it there."""
    from ringfence.alerts.worker import OUTBOX, AlertWorker, RoutedAlerts
    from ringfence.journal.store_mirror import journal_key
    from ringfence.store.base import Put
    from ringfence.store.sqlite import SqliteStore

    class Journal:
        def __init__(self) -> None:
            self.sent: list[dict[str, Any]] = []

        def record(self, kind: str, **fields: Any) -> None:
            if kind == "alert_sent":
                self.sent.append(fields)

    def put(t: float, seq: int, kind: str, host: str, **fields: Any) -> None:
        store.txn([], [Put(journal_key("hv1", 1, seq), {
            "v": 2, "t": t, "seq": seq, "by": "hv1", "kind": kind, "host": host, "vm": "erp",
            "text": kind, **fields})])

    def active() -> list[Any]:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        return [a for a in alerts if a["status"]["state"] == "active"]

    store = SqliteStore(str(tmp_path / "s.db"))
    journal = Journal()
    worker = AlertWorker([route(kind="alertmanager", url=alertmanager)], cluster="prod",
                         host="hv1", journal=journal)
    worker.start(store, lambda: True)
    now = time.time()
    RoutedAlerts(journal, worker).send("critical", "erp died on hv2", host="hv2", vm="erp")
    alert_id = journal.sent[0]["alert"]
    put(now - 9, 1, "vm_started", "hv2")
    put(now - 5, 2, "vm_crashed", "hv2")
    put(now - 4.9, 3, "alert_sent", "hv2", severity="critical", detail="erp died on hv2",
        alert=alert_id)
    deadline = time.monotonic() + 15
    while not active():
        assert time.monotonic() < deadline, "the alert did not reach Alertmanager"
        time.sleep(0.1)
    assert active()[0]["labels"]["incident"] == alert_id
    put(now, 4, "vm_started", "hv3")
    deadline = time.monotonic() + 15
    while active() or store.get_prefix(OUTBOX).items:
        assert time.monotonic() < deadline, "the alert was not resolved in Alertmanager"
        time.sleep(0.1)
    worker.close()
