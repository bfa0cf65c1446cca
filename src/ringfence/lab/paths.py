"""Where one lab keeps everything on disk: one directory, removed at teardown (unless
``--keep``). The layout is what the lab's processes agree on:

=============================  ===============================================================
``cluster.key``                the heartbeat key
``config/<host>.yaml``         the cluster file host <host>'s agent reads (its own endpoints
                               and datastore paths); ``config/operator.yaml`` for the tools
``disk.jsonl``                 the shared "disk" every process VM appends to: ground truth
``hosts/<host>/state``         the agent's state directory (journal, local state, VMs)
``hosts/<host>/datastores/D``  the host's datastore D (its write probe writes here)
``hosts/<host>/edac/mc0``      the corrected-memory-error counter its probes read
``hosts/<host>/agent.log``     the agent's stderr (and its watchdog supervisor's)
``netns/<node>.ino``           the node's namespace inode (the fence agent kills by it)
``power/<host>.off|.on``       the fence agent's power state and power-on requests
``etcd/<member>``              etcd data and logs
``bin/fence_lab``              the fence agent, as an executable
=============================  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ringfence.agent.journal import journal_file


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def key(self) -> Path:
        return self.root / "cluster.key"

    @property
    def disk(self) -> Path:
        return self.root / "disk.jsonl"

    @property
    def netns(self) -> Path:
        return self.root / "netns"

    @property
    def power(self) -> Path:
        return self.root / "power"

    @property
    def fence_agent(self) -> Path:
        return self.root / "bin" / "fence_lab"

    def config(self, host: str | None) -> Path:
        return self.root / "config" / f"{host or 'operator'}.yaml"

    def host(self, host: str) -> Path:
        return self.root / "hosts" / host

    def state(self, host: str) -> Path:
        return self.host(host) / "state"

    def datastore(self, host: str, datastore: str) -> Path:
        return self.host(host) / "datastores" / datastore

    def edac(self, host: str) -> Path:
        return self.host(host) / "edac"

    def agent_log(self, host: str) -> Path:
        return self.host(host) / "agent.log"

    def reboot_marker(self, host: str) -> Path:
        return self.host(host) / "rebooting"

    def journal(self, host: str) -> Path:
        return journal_file(self.state(host), host)

    def make(self, hosts: list[str]) -> None:
        for directory in (self.root / "config", self.netns, self.power, self.root / "bin",
                          self.root / "etcd"):
            directory.mkdir(parents=True, exist_ok=True)
        for host in hosts:
            self.state(host).mkdir(parents=True, exist_ok=True)
            (self.edac(host) / "mc0").mkdir(parents=True, exist_ok=True)
            (self.edac(host) / "mc0" / "ce_count").write_text("0\n")
