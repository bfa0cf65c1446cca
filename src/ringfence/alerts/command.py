"""The command route: run a program with the alert (as Pacemaker's alert agents).

The program gets ``RINGFENCE_ALERT_ID``, ``_SEVERITY``, ``_TEXT``, ``_HOST``, ``_VM``,
``_CLUSTER``, ``_RAISED_BY``, ``_TIME``, ``_STATUS`` (``firing`` or ``resolved``; a resolution
has the alert's id) and ``_ENDS`` (a resolution's time, else empty) in its environment and
the alert as one JSON object on stdin. Exit status 0 is delivered; any other status, a program
that can not be started, or one still running at the route's `timeout` (killed then) raises
`DeliveryError`, and the retry runs it again with the same id: the program should treat the id
(with the status) as an idempotency key.
"""

from __future__ import annotations

import json
import os
import subprocess

from ringfence.alerts.models import Alert
from ringfence.alerts.routes import AlertMessage, DeliveryError, iso_time

__all__ = ["alert_environment", "run_command"]


def alert_environment(message: AlertMessage) -> dict[str, str]:
    return {
        "RINGFENCE_ALERT_ID": message.id,
        "RINGFENCE_ALERT_SEVERITY": message.severity,
        "RINGFENCE_ALERT_TEXT": message.text,
        "RINGFENCE_ALERT_HOST": message.host or "",
        "RINGFENCE_ALERT_VM": message.vm or "",
        "RINGFENCE_ALERT_CLUSTER": message.cluster,
        "RINGFENCE_ALERT_RAISED_BY": message.raised_by,
        "RINGFENCE_ALERT_TIME": iso_time(message.t),
        "RINGFENCE_ALERT_STATUS": message.status,
        "RINGFENCE_ALERT_ENDS": iso_time(message.ends) if message.ends is not None else "",
    }


def run_command(route: Alert, message: AlertMessage) -> str:
    body = json.dumps(message.body(), ensure_ascii=False)
    try:
        done = subprocess.run(route.command, input=body, text=True, capture_output=True,
                              timeout=route.timeout, check=False,
                              env={**os.environ, **alert_environment(message)})
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"{route.command[0]}: still running after "
                            f"{route.timeout:g}s (killed)") from None
    except OSError as exc:
        raise DeliveryError(f"{route.command[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip()[-300:]
        raise DeliveryError(f"{route.command[0]} exited {done.returncode}"
                            + (f": {why}" if why else ""))
    return f"{route.command[0]} exited 0"
