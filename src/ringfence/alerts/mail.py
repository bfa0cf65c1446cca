"""The e-mail route: one message over SMTP (smtplib), STARTTLS by default, optional auth.

One attempt is one SMTP session bounded by the route's `timeout` per socket operation. SMTP
acceptance is the server's `250` after DATA: from then on the message is the server's; a
session that breaks before it raises `DeliveryError` and the retry sends the message again
(same `Message-ID`, built from the alert id, so mail systems that dedupe by it show it once).
A resolution has its own `Message-ID` (``<id>.resolved@…``) and is a reply to the alert
(`In-Reply-To`), so mail clients thread the two.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from ringfence.alerts.http_routes import read_secret
from ringfence.alerts.models import Alert
from ringfence.alerts.routes import AlertMessage, DeliveryError

__all__ = ["build_email", "send_email"]


def build_email(route: Alert, message: AlertMessage) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = route.from_ or f"ringfence@{socket.getfqdn()}"
    mail["To"] = ", ".join(route.to)
    state = "resolved" if message.resolved else message.severity
    mail["Subject"] = f"[ringfence {state}] {message.text[:200]}"
    mail["Date"] = formatdate(message.ends if message.ends is not None else message.t)
    first = f"<{message.id}@ringfence.{message.cluster}>"
    if message.resolved:  # its own Message-ID, in the thread of the alert it resolves
        mail["Message-ID"] = f"<{message.id}.resolved@ringfence.{message.cluster}>"
        mail["In-Reply-To"] = first
        mail["References"] = first
    else:
        mail["Message-ID"] = first
    mail["X-Ringfence-Alert-Id"] = message.id
    mail["X-Ringfence-Alert-Status"] = message.status
    about = "/".join(x for x in (message.host, message.vm) if x) or "-"
    mail.set_content(f"{message.text}\n\nseverity: {message.severity}\ncluster: "
                     f"{message.cluster}\nabout: {about}\nraised by: {message.raised_by}\n"
                     f"alert id: {message.id}\nstatus: {message.status}\n")
    return mail


def send_email(route: Alert, message: AlertMessage) -> str:
    assert route.smtp is not None
    host, _, port = route.smtp.rpartition(":")
    mail = build_email(route, message)
    try:
        with smtplib.SMTP(host.strip("[]"), int(port), timeout=route.timeout) as smtp:
            if route.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if route.username and route.password_file:
                password = read_secret(route.password_file).decode("utf-8", "replace")
                smtp.login(route.username, password)
            refused = smtp.send_message(mail)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"smtp {route.smtp}: {type(exc).__name__}: {exc}") from None
    if refused:
        return f"accepted by {route.smtp}; refused: {', '.join(sorted(refused))}"
    return f"accepted by {route.smtp}"
