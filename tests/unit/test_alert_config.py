"""The `alerts:` section: route fields per kind, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.config import load_cluster
from ringfence.errors import ConfigError

BASE = """\
networks: [{name: ring0, role: heartbeat}]
hosts: [{name: a, cpus: 4, memory: 4GiB}]
alerts:
"""


def load(tmp_path: Path, route: str) -> object:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + f"  - {route}\n")
    return load_cluster(path).alerts[0]


def error(tmp_path: Path, route: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, route)
    return str(caught.value)


def test_every_kind_with_its_fields(tmp_path: Path) -> None:
    email = load(tmp_path, "{kind: email, smtp: 'mx:587', from: rf@x.org, to: [a@x.org], "
                           "username: rf, password_file: /etc/rf/smtp, min_severity: warning, "
                           "rate_limit: {count: 5, per: 10m}}")
    assert email.from_ == "rf@x.org" and email.starttls  # type: ignore[attr-defined]
    assert email.rate_limit.count == 5 and email.rate_limit.per == 600.0  # type: ignore[attr-defined]
    command = load(tmp_path, "{kind: command, command: [/usr/bin/page, --loud], timeout: 3s}")
    assert command.command == ["/usr/bin/page", "--loud"]  # type: ignore[attr-defined]
    deadman = load(tmp_path, "{kind: deadman, url: 'https://hc.example/p'}")
    assert deadman.interval == 60.0  # type: ignore[attr-defined]
    hook = load(tmp_path, "{kind: webhook, url: 'http://127.0.0.1:9/h', name: pager}")
    assert hook.label == "pager"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("route", "words"),
    [
        ("{kind: webhook}", ["alerts[0]:", "webhook route needs url"]),
        ("{kind: email, smtp: 'mx:25'}", ["alerts[0]:", "needs to"]),
        ("{kind: command}", ["needs command"]),
        ("{kind: webhook, url: 'http://x/', to: [a@b.c]}", ["to is not a field of a webhook"]),
        ("{kind: email, smtp: 'mx:25', to: [a@b], from: bad}", ["alerts[0].from:", "e-mail"]),
        ("{kind: email, smtp: 'mx', to: [a@b]}", ["alerts[0].smtp:", "HOST:PORT"]),
        ("{kind: webhook, url: 'ftp://x/'}", ["alerts[0].url:", "http(s) URL"]),
        ("{kind: log, min_severity: huge}", ["alerts[0].min_severity:", "critical"]),
        ("{kind: log, rate_limit: {count: 0}}", ["alerts[0].rate_limit.count:"]),
        ("{kind: email, smtp: 'mx:25', to: [a@b], username: u}", ["password_file"]),
        ("{kind: pager}", ["alerts[0].kind:", "webhook"]),
    ],
)
def test_bad_route_names_the_field(tmp_path: Path, route: str, words: list[str]) -> None:
    text = error(tmp_path, route)
    assert "c.yaml:4:" in text
    for word in words:
        assert word in text, text


def test_demo_refuses_a_bad_fault_target_or_webhook(capsys: pytest.CaptureFixture[str]) -> None:
    from ringfence.cli import main

    assert main(["demo", "--fault-target", "host9", "--hosts", "3"]) == 2
    assert "--fault-target: expected one of busiest, leader, host1, host2, host3" in (
        capsys.readouterr().err)
    assert main(["demo", "--alert-webhook", "ftp://x/"]) == 2
    assert "http(s) URL" in capsys.readouterr().err
