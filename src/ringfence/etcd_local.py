"""Local etcd members on loopback, started and stopped by tests, benchmarks and demos.

Each member is Debian's `etcd` binary with a temporary data directory and free ports on
127.0.0.1; elections are fast (50 ms heartbeat, 500 ms election timeout), so etcd's minimum lease
TTL is 1 s, and pre-vote is on, so that a member that comes back does not depose the leader.
Nothing here is used by an agent in production.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import etcd3gw

from ringfence.store.base import Store
from ringfence.store.retry import Retry, RetryFailed

ETCD = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)

# Fast elections for tests: etcd's minimum lease TTL becomes 1 s (1.5 x election timeout).
HEARTBEAT_MS = 50
ELECTION_MS = 500
# The timers above, and pre-vote: a member back from a reboot or a partition raises its term
# only once a quorum would elect it, instead of deposing the leader it finds (etcd 3.4 defaults
# to off; issue 17: the store was silent for two seconds after a lab host's reboot). Every etcd
# the project starts (here and the lab's members) runs with these.
TUNING = ["--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
          "--pre-vote"]


# ----------------------------------------------------------------------------- etcd processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    """One etcd process on loopback, started and killed by the test."""

    name: str
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    scheme: str = "http"
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def log(self) -> Path:
        return self.data_dir.with_suffix(".log")

    def start(self, initial_cluster: str) -> None:
        assert ETCD is not None
        argv = [
            ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", "ringfence-test",
            *TUNING,
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
            *self.extra,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""


@dataclass
class Cluster:
    members: list[Member]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, member: Member | None = None) -> None:
        for m in [member] if member else self.members:
            m.start(self.initial_cluster)

    def stop(self) -> None:
        for m in self.members:
            m.kill()

    def wait_ready(self, store: Store, within: float = 20.0) -> None:
        """Block until `store` answers; RuntimeError with the members' logs if it does not."""
        try:
            Retry(None, deadline=within, delay=0.05, backoff=1.5, max_delay=0.3)(store.revision)
        except RetryFailed:
            logs = "\n".join(f"--- {m.name}\n{m.log_tail()}" for m in self.members)
            raise RuntimeError(f"etcd did not become ready within {within} s\n{logs}") from None


def make_cluster(tmp: Path, size: int, **member_options: Any) -> Cluster:
    return Cluster([Member(f"m{i}", tmp / f"m{i}", **member_options) for i in range(size)])


@contextlib.contextmanager
def running_cluster(tmp: Path, size: int, **member_options: Any) -> Iterator[Cluster]:
    """A local cluster of `size` members, started and ready (RuntimeError with the members'
    logs if it does not answer); on exit its own members, and only those, are stopped."""
    from ringfence.store.etcd import EtcdStore

    cluster = make_cluster(tmp, size, **member_options)
    cluster.start()
    try:
        with EtcdStore(cluster.endpoints, timeout=1.0) as store:
            cluster.wait_ready(store)
        yield cluster
    finally:
        cluster.stop()




def wipe(endpoint: str) -> None:
    """Revoke every lease and delete every key, so tests do not see each other's writes."""
    port = int(endpoint.rsplit(":", 1)[1])
    client = etcd3gw.client(host="127.0.0.1", port=port, timeout=5, api_path="/v3/")
    leases = client.post(client.get_url("lease/leases"), json={}).get("leases") or []
    for lease in leases:
        with contextlib.suppress(Exception):
            client.post(client.get_url("lease/revoke"), json={"ID": lease["ID"]})
    client.post(client.get_url("kv/deleterange"), json={"key": "AA==", "range_end": "AA=="})
    client.session.close()
