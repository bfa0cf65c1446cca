"""The store of a lab cluster: one etcd member per store member of the scenario, each running
inside the namespace of its host or witness (so a host's member dies with the host, and a
partition cuts members apart exactly as it cuts hosts), or the embedded SQLite file when the
scenario names a single member.

A member listens for peers and clients on its address on every network it is on (and for
clients on its namespace's loopback too), and advertises all of them: when a partition takes one
network, etcd's peer transport moves to another URL of the same member. Elections are fast, as
in `ringfence.etcd_local` (50 ms heartbeat, 500 ms election timeout). Data directories live in
the lab's directory and go with it; a member that is killed (power off) and started again keeps
its data, as a rebooted host keeps its disk.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ringfence.etcd_local import ETCD, TUNING
from ringfence.lab import netns
from ringfence.lab.netns import LabError
from ringfence.lab.topology import Topology

CLIENT_PORT = 2379
PEER_PORT = 2380
HEALTH = (  # asked inside a member's namespace; prints ok once the store has a leader
    "import json, urllib.request\n"
    "try:\n"
    f"    url = 'http://127.0.0.1:{CLIENT_PORT}/health'\n"
    "    body = urllib.request.urlopen(url, timeout=1).read()\n"
    "    print('ok' if json.loads(body).get('health') == 'true' else 'no')\n"
    "except Exception:\n"
    "    print('no')\n")
STATUS = (  # asked inside a member's namespace; prints "<member id> <leader id>" or nothing
    "import json, urllib.request\n"
    "try:\n"
    f"    url = 'http://127.0.0.1:{CLIENT_PORT}/v3/maintenance/status'\n"
    "    req = urllib.request.Request(url, data=b'{}', method='POST')\n"
    "    body = json.loads(urllib.request.urlopen(req, timeout=1).read())\n"
    "    print(body['header']['member_id'], body.get('leader', ''))\n"
    "except Exception:\n"
    "    pass\n")

MOVE = (  # asked inside the leader's namespace: hand the leadership to member argv[1]
    "import json, sys, urllib.request\n"
    f"url = 'http://127.0.0.1:{CLIENT_PORT}/v3/maintenance/transfer-leadership'\n"
    "body = json.dumps({'targetID': sys.argv[1]}).encode()\n"
    "req = urllib.request.Request(url, data=body, method='POST')\n"
    "print(urllib.request.urlopen(req, timeout=5).read().decode())\n")


@dataclass
class EtcdMember:
    name: str  # the host or witness
    ns: str
    addresses: list[str]
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def peer_urls(self) -> list[str]:
        return [f"http://{a}:{PEER_PORT}" for a in self.addresses]

    def client_urls(self) -> list[str]:
        return [f"http://{a}:{CLIENT_PORT}" for a in self.addresses]

    def start(self, initial_cluster: str, token: str) -> None:
        if ETCD is None:
            raise LabError("etcd is not installed (apt-get install etcd-server)")
        listen = ",".join([*self.client_urls(), f"http://127.0.0.1:{CLIENT_PORT}"])
        argv = [
            "ip", "netns", "exec", self.ns, ETCD, "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", listen,
            "--advertise-client-urls", ",".join(self.client_urls()),
            "--listen-peer-urls", ",".join(self.peer_urls()),
            "--initial-advertise-peer-urls", ",".join(self.peer_urls()),
            "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            *TUNING,
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def reap(self) -> None:
        """Collect the exit status of a member that was killed with its namespace."""
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            self.process = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LabStore:
    """The etcd members of one lab (empty for the SQLite store)."""

    def __init__(self, topology: Topology, members: list[str], workdir: Path) -> None:
        self.topology = topology
        self.kind = "sqlite" if len(members) == 1 else "etcd"
        self.sqlite_path = workdir / "store.db"
        self.token = f"ringfence-{topology.prefix}"
        self.members: dict[str, EtcdMember] = {}
        if self.kind == "etcd":
            (workdir / "etcd").mkdir(exist_ok=True)
            for name in members:
                node = topology.nodes[name]
                addresses = [nic.address for nic in node.nics.values()]
                self.members[name] = EtcdMember(name, node.ns, addresses,
                                                workdir / "etcd" / name,
                                                workdir / "etcd" / f"{name}.log")

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={url}" for m in self.members.values()
                        for url in m.peer_urls())

    def endpoints_for(self, host: str | None) -> list[str]:
        """The client URLs `host` uses: its own member on loopback first, then every other
        member's address on each network the two share (None: every address)."""
        if self.kind != "etcd":
            return []
        urls: list[str] = []
        if host is not None and host in self.members:
            urls.append(f"http://127.0.0.1:{CLIENT_PORT}")
        mine = set(self.topology.nodes[host].nics) if host is not None else None
        for name in self.members:
            if name == host:
                continue
            for network, nic in self.topology.nodes[name].nics.items():
                if mine is None or network in mine:
                    urls.append(f"http://{nic.address}:{CLIENT_PORT}")
        return urls

    def start(self, name: str) -> None:
        member = self.members.get(name)
        if member is not None and not member.running():
            member.reap()
            member.start(self.initial_cluster, self.token)

    def start_all(self) -> None:
        for name in self.members:
            self.start(name)

    def leader(self) -> str | None:
        """The member that leads the store now, as its running members say (None: no etcd,
        or no answer). For the benchmarks: what died with a host."""
        ids, leaders = self._status()
        named = [ids[leader] for leader in leaders if leader in ids]
        return named[0] if len(named) == 1 else None

    def move_leader(self, to: str) -> bool:
        """Ask the leader to hand its leadership to member `to` (etcd's MoveLeader). For the
        benchmarks, which choose what dies with a host. False: no leader, or `to` is no
        running member; the move itself is confirmed by `leader`."""
        ids, leaders = self._status()
        target = next((member_id for member_id, name in ids.items() if name == to), None)
        leader = ids.get(next(iter(leaders))) if len(leaders) == 1 else None
        if target is None or leader is None:
            return False
        if leader == to:
            return True
        done = netns.in_ns(self.members[leader].ns, sys.executable, "-c", MOVE, target,
                           check=False)
        return done.returncode == 0

    def _status(self) -> tuple[dict[str, str], set[str]]:
        """(member id: name, the leader ids the running members name)."""
        ids: dict[str, str] = {}
        leaders: set[str] = set()
        if self.kind != "etcd":
            return ids, leaders
        for member in self.members.values():
            if not member.running():
                continue
            done = netns.in_ns(member.ns, sys.executable, "-c", STATUS, check=False)
            words = done.stdout.split()
            if len(words) == 2:
                ids[words[0]] = member.name
                leaders.add(words[1])
        return ids, leaders

    def wait_ready(self, within: float = 30.0) -> None:
        """Block until the store has a leader, asked from inside a member's namespace."""
        if self.kind != "etcd":
            return
        deadline = time.monotonic() + within
        member = next(iter(self.members.values()))
        while time.monotonic() < deadline:
            done = netns.in_ns(member.ns, sys.executable, "-c", HEALTH, check=False)
            if done.stdout.strip() == "ok":
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {m.name}\n{_tail(m.log)}" for m in self.members.values())
        raise LabError(f"etcd did not elect a leader within {within:g}s\n{logs}")


def _tail(path: Path, limit: int = 2000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-limit:]
    return ""
