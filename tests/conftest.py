"""Shared helpers: build scenarios from Python dicts, run them, read the results."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringfence.demo import Demo, DemoOptions
from ringfence.sim.runner import SimulationResult, simulate
from ringfence.sim.scenario import parse_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"

THREE_HOSTS: dict[str, Any] = {
    "name": "test",
    "duration": "120s",
    "cluster": {
        "timing": {"heartbeat_interval": "200ms", "host_lease_ttl": "6s",
                   "watchdog_timeout": "4s"},
        "networks": [{"name": "ring0", "role": "heartbeat"},
                     {"name": "ring1", "role": "heartbeat"}],
        "hosts": [{"name": f"host{i}", "cpus": 16, "memory": "64GiB"} for i in (1, 2, 3)],
        "vms": [{"name": "app", "cpus": 2, "memory": "4GiB", "host": "host1"}],
    },
}


def scenario(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A copy of `base` (default: three hosts, one VM on host1) with top-level changes;
    `cluster_<field>=...` changes a cluster field."""
    data = copy.deepcopy(base or THREE_HOSTS)
    for key, value in changes.items():
        if key.startswith("cluster_"):
            data["cluster"][key.removeprefix("cluster_")] = value
        else:
            data[key] = value
    return data


def run(data: dict[str, Any], seed: int | None = None) -> SimulationResult:
    return simulate(parse_scenario(data), seed)


def runs_of(result: SimulationResult, vm: str) -> list[tuple[str, float, float]]:
    return [(r.host, r.start, r.end or 0.0) for r in result.world.runs if r.vm == vm]


def first_event(result: SimulationResult, kind: str, host: str | None = None) -> float:
    for entry in result.world.entries:
        if entry.kind == kind and (host is None or entry.host == host):
            return entry.t
    pytest.fail(f"no {kind} event" + (f" about {host}" if host else ""))


# ----------------------------------------------------------------- real clusters (the demo's)
def new_demo(hosts: int, vms: int, tmp_path: Path, **options: object) -> Demo:
    demo_options = DemoOptions(hosts=hosts, vms=vms, port=0, browser=False, as_json=True,
                               workdir=tmp_path / "demo", **options)  # type: ignore[arg-type]
    return Demo(demo_options)


def wait_for(condition: object, within: float, what: str) -> float:
    started = time.time()
    while time.time() - started < within:
        if condition():  # type: ignore[operator]
            return time.time() - started
        time.sleep(0.1)
    pytest.fail(f"timed out after {within:g}s waiting for {what}")


def bootstrapped(path: Path, cluster: str) -> None:
    """A SQLite store at `path` with the cluster identity an agent's bootstrap would write
    (tools and agents refuse a store without one)."""
    from ringfence.store.base import Compare, Put
    from ringfence.store.identity import IDENTITY_KEY, StoreIdentity
    from ringfence.store.sqlite import SqliteStore

    with SqliteStore(str(path)) as store:
        store.txn([Compare.absent(IDENTITY_KEY)],
                  [Put(IDENTITY_KEY, StoreIdentity(cluster, "test-identity", 1).value())])


class WebhookReceiver:
    """A real HTTP receiver on loopback for alert routes: checks the HMAC signature of every
    POST (when given a secret), dedupes alerts by `Idempotency-Key`, and counts GETs (dead-man
    pings). `fail` answers the next that many POSTs with 503; `hold` keeps the next POST's
    answer back that many seconds (after it was recorded: a delivery in flight)."""

    def __init__(self, secret: bytes | None = None) -> None:
        import http.server
        import threading

        self.secret = secret
        self.alerts: dict[str, dict[str, Any]] = {}  # by idempotency key: the first body
        self.arrived: dict[str, float] = {}  # when each key first arrived (time.time())
        self.posts = 0
        self.duplicates = 0
        self.bad_signatures = 0
        self.pings: list[float] = []
        self.fail = 0
        self.hold = 0.0
        self.held = threading.Event()  # set when a held POST arrived
        self.closing = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with receiver.lock:
                    receiver.pings.append(time.time())
                self._answer(200)

            def do_POST(self) -> None:
                import hashlib
                import hmac
                import json

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.posts += 1
                    if receiver.fail > 0:
                        receiver.fail -= 1
                        self._answer(503)
                        return
                    if receiver.secret is not None:
                        want = "sha256=" + hmac.new(receiver.secret, body,
                                                    hashlib.sha256).hexdigest()
                        if not hmac.compare_digest(
                                want, self.headers.get("X-Ringfence-Signature", "")):
                            receiver.bad_signatures += 1
                            self._answer(401)
                            return
                    key = self.headers.get("Idempotency-Key", "")
                    if key in receiver.alerts:
                        receiver.duplicates += 1
                    else:
                        receiver.alerts[key] = json.loads(body)
                        receiver.arrived[key] = time.time()
                    hold, receiver.hold = receiver.hold, 0.0
                if hold:
                    receiver.held.set()
                    receiver.closing.wait(hold)
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Any:
    receiver = WebhookReceiver(secret=b"s3cret")
    yield receiver
    receiver.close()


@pytest.fixture
def no_new_namespaces() -> Iterator[None]:
    """For the lab tests: skips (saying why) when the machine can not host a lab; afterwards,
    every namespace the test's labs made is gone."""
    from ringfence.lab import netns
    from ringfence.lab.runner import check_machine

    problems = check_machine()
    if problems:
        pytest.skip("; ".join(problems))
    before = set(netns.names())
    yield None
    leftover = sorted(set(netns.names()) - before)
    assert not leftover, f"namespaces left behind: {leftover}"


# ---------------------------------------------------------------------------- real VMs
# The fixtures of the real-VM tests (marker `qemu`, tests/qemu): a QEMU lab of two libvirt
# hosts, each its own libvirtd and virtlockd in network and mount namespaces
# (`ringfence.guest.libvirtd`), with tiny real guests (TCG: no KVM needed). They live here, not
# in a tests/qemu/conftest.py: a second module named `conftest` would shadow this one for the
# test modules that import helpers from it. What the machine needs is installed by
# ``scripts/install-qemu`` (idempotent), which the lab fixture runs first; the tests skip,
# saying why, when the machine can not run them (not root, no libvirt-python, the install
# failing). Everything the lab starts is torn down afterwards even when a test fails, and the
# teardown is checked: no namespace of the lab (prefix ``rfq-``) is left.
REPO = Path(__file__).resolve().parents[1]



def skip_unless_able() -> None:
    """Skip (saying why) unless this machine can run QEMU guests; installs what they need."""
    if os.geteuid() != 0:
        pytest.skip("the QEMU tests need root (network and mount namespaces, apt-get): "
                    "run them as root, e.g. `sudo .venv/bin/python -m pytest -m qemu tests/qemu`")
    try:
        import libvirt  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"import libvirt failed ({exc}): install it with "
                    f"PYTHON=.venv/bin/python bash scripts/install-libvirt")
    done = subprocess.run(["bash", str(REPO / "scripts" / "install-qemu")],
                          env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        pytest.skip(f"scripts/install-qemu failed, so this machine can not run QEMU guests: "
                    f"{(done.stderr or done.stdout).strip()[-600:]}")


@pytest.fixture(scope="session")
def qemu_ready() -> None:
    skip_unless_able()


@pytest.fixture(scope="module")
def qemu_lab(qemu_ready: None) -> Iterator[Any]:
    from ringfence.guest.libvirtd import QemuLab

    made = QemuLab(2)
    try:
        made.start()
        yield made
    finally:
        made.close()
        assert made.namespaces() == [], f"namespaces left: {made.namespaces()}"
        assert made.leftovers == []
        assert not made.root.exists()
