"""Pacemaker 2.1 + corosync 3 in three network namespaces, for the side-by-side benchmark.

The same shape as the ringfence lab: three node namespaces joined through a bridge in a switch
namespace (one network, ``10.<200+n>.0.<i>/24``). Each node runs ``corosync -f`` and
``pacemakerd -f`` in its own mount and UTS namespace, with private copies of the directories
Pacemaker writes (``/etc/corosync``, ``/var/lib/pacemaker``, ``/var/lib/corosync``, the logs,
``/run`` and ``/dev/shm``), so three stacks share the machine without sharing state. libqb IPC
uses abstract sockets, which are per network namespace.

Fencing is on: a fence agent (``/usr/sbin/fence_ringfence_bench``: Pacemaker looks for
RHCS-style agents in /usr/sbin only) powers a node off by killing every process of its
namespace, found by the namespace's inode. One resource, ``ocf:pacemaker:Dummy`` with a 1 s
monitor and stickiness 1; the time it really starts on the new node is when its state file
(``/run/Dummy-dummy.state`` in that node's private /run) appears.

Startup pitfalls (from ../shared/labs/pacemaker/README.md, measured on this machine kind):
no DC for ~22 s after start (dc-deadtime 20 s); stonith is enabled only once all three nodes
are online, otherwise start-up fencing shoots the nodes not yet seen. Packages:
scripts/install-pacemaker. Everything is stopped and removed by `down`; the fence agent file is
removed if this lab installed it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

AGENT = Path("/usr/sbin/fence_ringfence_bench")
NODES = (1, 2, 3)

FENCE_AGENT = r'''#!/usr/bin/python3
"""fence_ringfence_bench: powers a Pacemaker lab node off by killing its namespace."""
import os, signal, sys, time

def node_pids(lab, node):
    ino = int(open(os.path.join(lab, "netns", node + ".ino")).read())
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                if os.stat("/proc/%s/ns/net" % d).st_ino == ino:
                    found.append(int(d))
            except OSError:
                pass
    return found

def main():
    opts = {}
    for line in sys.stdin.read().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            opts[k.strip()] = v.strip()
    action = opts.get("action", "reboot")
    target = opts.get("plug") or opts.get("port") or opts.get("nodename")
    lab = opts.get("lab", "")
    if action == "metadata":
        sys.stdout.write('<?xml version="1.0" ?><resource-agent name="fence_ringfence_bench" '
                         'shortdesc="kills a lab node"><parameters><parameter name="lab" '
                         'unique="0"><content type="string"/><shortdesc lang="en">lab dir'
                         '</shortdesc></parameter></parameters><actions><action name="on"/>'
                         '<action name="off"/><action name="reboot"/><action name="status"/>'
                         '<action name="list"/><action name="monitor"/><action name="metadata"'
                         '/><action name="validate-all"/></actions></resource-agent>\n')
        return 0
    if action in ("monitor", "validate-all", "list"):
        return 0
    if not target or not os.path.exists(os.path.join(lab, "netns", str(target) + ".ino")):
        return 1
    if action == "status":
        return 0 if node_pids(lab, target) else 2
    if action == "on":
        return 0
    for _ in range(200):
        pids = node_pids(lab, target)
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        time.sleep(0.01)
    with open(os.path.join(lab, "fence.log"), "a") as log:
        log.write("%.3f %s %s\n" % (time.time(), action, target))
    return 0

sys.exit(main())
'''

INIT = r'''#!/bin/bash
# Runs inside node $1's namespaces: private state, then corosync and pacemaker.
set -e
d=$2/n$1
mount --bind "$d/etc-corosync" /etc/corosync
mount --bind "$d/var-lib-pacemaker" /var/lib/pacemaker
mount --bind "$d/var-lib-corosync" /var/lib/corosync
mount --bind "$d/var-log-pacemaker" /var/log/pacemaker
mount --bind "$d/var-log-corosync" /var/log/corosync
mount --bind "$d/run" /run
mount -t tmpfs -o size=256m,mode=1777 tmpfs /dev/shm
hostname "node$1"
echo $$ > "$d/init.pid"
corosync -f &
for _ in $(seq 100); do
  corosync-cmapctl totem.cluster_name >/dev/null 2>&1 && break
  sleep 0.1
done
PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none pacemakerd -f &
wait
'''


def run(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=check)


class PacemakerLab:
    def __init__(self, workdir: Path, *, slot: int, token_ms: int | None = 1000) -> None:
        self.workdir = workdir
        self.slot = slot
        self.prefix = f"rfpm{slot}"
        self.token_ms = token_ms
        self.installed_agent = False

    # ------------------------------------------------------------------ names
    def ns(self, node: int) -> str:
        return f"{self.prefix}-n{node}"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def address(self, node: int) -> str:
        return f"10.{200 + self.slot}.0.{node}"

    def node_dir(self, node: int) -> Path:
        return self.workdir / f"n{node}"

    def init_pid(self, node: int) -> str:
        return (self.node_dir(node) / "init.pid").read_text().strip()

    # ------------------------------------------------------------------ building
    def up(self) -> None:
        if shutil.which("pacemakerd") is None:
            raise RuntimeError("Pacemaker is not installed: run scripts/install-pacemaker")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "netns").mkdir(exist_ok=True)
        if not AGENT.exists():
            AGENT.write_text(FENCE_AGENT)
            AGENT.chmod(0o755)
            self.installed_agent = True
        (self.workdir / "init.sh").write_text(INIT)
        run("ip", "netns", "add", self.switch)
        batch = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
        for node in NODES:
            run("ip", "netns", "add", self.ns(node))
            batch += [f"link add p{node} type veth peer name eth0 netns {self.ns(node)}",
                      f"link set p{node} master br0", f"link set p{node} up"]
        subprocess.run(["ip", "-n", self.switch, "-batch", "-"], input="\n".join(batch) + "\n",
                       text=True, check=True, capture_output=True)
        for node in NODES:
            subprocess.run(["ip", "-n", self.ns(node), "-batch", "-"], text=True, check=True,
                           capture_output=True,
                           input=f"link set lo up\naddr add {self.address(node)}/24 dev eth0\n"
                                 "link set eth0 up\n")
            ino = os.stat(f"/run/netns/{self.ns(node)}").st_ino
            (self.workdir / "netns" / f"node{node}.ino").write_text(f"{ino}\n")
            self._write_corosync_conf(node)
            self._prepare(node, fresh=True)
        for node in NODES:
            self.start(node)
        self.wait_online(180.0)
        primitive = ('<primitive id="fence-lab" class="stonith" type="fence_ringfence_bench">'
                     '<instance_attributes id="fence-lab-ia">'
                     '<nvpair id="fence-lab-hosts" name="pcmk_host_list" '
                     'value="node1 node2 node3"/>'
                     f'<nvpair id="fence-lab-dir" name="lab" value="{self.workdir}"/>'
                     '</instance_attributes><operations>'
                     '<op id="fence-lab-mon" name="monitor" interval="60s"/></operations>'
                     '</primitive>')
        dummy = ('<primitive id="dummy" class="ocf" provider="pacemaker" type="Dummy">'
                 '<operations><op id="dummy-mon" name="monitor" interval="1s" timeout="20s"/>'
                 '</operations></primitive>')
        self.x(1, "cibadmin", "-C", "-o", "resources", "-X", primitive)
        self.x(1, "cibadmin", "-C", "-o", "resources", "-X", dummy)
        self.x(1, "crm_attribute", "-t", "rsc_defaults", "-n", "resource-stickiness", "-v", "1")
        self.x(1, "crm_attribute", "-t", "crm_config", "-n", "stonith-enabled", "-v", "true")
        self.x(1, "crm_resource", "--wait", "--timeout=60s")

    def _write_corosync_conf(self, node: int) -> None:
        directory = self.node_dir(node) / "etc-corosync"
        directory.mkdir(parents=True, exist_ok=True)
        token = f"    token: {self.token_ms}\n" if self.token_ms else ""
        nodes = "".join(f"    node {{\n        ring0_addr: {self.address(n)}\n        name: "
                        f"node{n}\n        nodeid: {n}\n    }}\n" for n in NODES)
        (directory / "corosync.conf").write_text(
            "totem {\n    version: 2\n    cluster_name: rfbench\n    transport: knet\n"
            f"    crypto_cipher: none\n    crypto_hash: none\n{token}}}\n"
            f"nodelist {{\n{nodes}}}\nquorum {{\n    provider: corosync_votequorum\n}}\n"
            "logging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n"
            "    to_stderr: no\n    to_syslog: no\n    timestamp: hires\n}\n")

    def _prepare(self, node: int, *, fresh: bool = False) -> None:
        d = self.node_dir(node)
        if fresh:
            for source, name in (("/var/lib/pacemaker", "var-lib-pacemaker"),
                                 ("/var/lib/corosync", "var-lib-corosync"),
                                 ("/var/log/pacemaker", "var-log-pacemaker")):
                shutil.rmtree(d / name, ignore_errors=True)
                shutil.copytree(source, d / name, symlinks=True)
            for stale in ("cib", "pengine"):
                for path in (d / "var-lib-pacemaker" / stale).glob("*"):
                    path.unlink()
            (d / "var-log-corosync").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(d / "run", ignore_errors=True)  # a power cycle empties /run
        for sub in ("lock", "resource-agents", "crm"):
            (d / "run" / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(d / "run" / "crm", "hacluster", "haclient")

    # ------------------------------------------------------------------ nodes
    def start(self, node: int) -> None:
        (self.node_dir(node) / "init.pid").unlink(missing_ok=True)
        with (self.node_dir(node) / "init.out").open("ab") as out:
            subprocess.Popen(["setsid", "ip", "netns", "exec", self.ns(node), "unshare",
                              "--mount", "--uts", "--propagation", "private", "--", "bash",
                              str(self.workdir / "init.sh"), str(node), str(self.workdir)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True)
        deadline = time.time() + 10
        while not (self.node_dir(node) / "init.pid").exists() and time.time() < deadline:
            time.sleep(0.05)

    def pids(self, node: int) -> list[int]:
        ino = int((self.workdir / "netns" / f"node{node}.ino").read_text())
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                        found.append(int(entry))
        return found

    def kill(self, node: int) -> None:
        """Power off: SIGSTOP and SIGKILL every process of the node until none is left."""
        for _ in range(500):
            pids = self.pids(node)
            if not pids:
                return
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, sig)
            time.sleep(0.01)
        raise RuntimeError(f"node{node} survives SIGKILL")

    def reboot(self, node: int) -> None:
        self.kill(node)
        self._prepare(node)
        self.start(node)

    def x(self, node: int, *argv: str) -> str:
        return run("nsenter", "-t", self.init_pid(node), "-n", "-m", "-u", "--", *argv).stdout

    # ------------------------------------------------------------------ state
    def status(self, node: int) -> tuple[dict[str, dict[str, str]], str | None, list[str]] | None:
        """(nodes, DC, nodes where dummy runs) as crm_mon on `node` sees them."""
        try:
            out = run("nsenter", "-t", self.init_pid(node), "-n", "-m", "-u", "--", "crm_mon",
                      "-1", "--output-as=xml", check=False, timeout=10).stdout
            root = ET.fromstring(out)
        except (OSError, ET.ParseError, subprocess.TimeoutExpired):
            return None
        nodes = {e.get("name", ""): dict(e.attrib) for e in root.findall("./nodes/node")}
        dc = root.find("./summary/current_dc")
        dc_name = dc.get("name") if dc is not None and dc.get("present") == "true" else None
        where: list[str] = []
        for resource in root.iter("resource"):
            if resource.get("id") == "dummy" and resource.get("role") == "Started":
                where = [n.get("name", "") for n in resource.findall("node")]
        return nodes, dc_name, where

    def wait_online(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for node in NODES:
                state = self.status(node)
                if state is None:
                    continue
                nodes, dc, _ = state
                if len(nodes) == 3 and all(n.get("online") == "true" for n in nodes.values()) \
                        and dc is not None:
                    return
            time.sleep(1.0)
        raise RuntimeError("the Pacemaker cluster did not come up")

    def holder(self) -> int | None:
        """The node that runs dummy, once the whole cluster is online and idle."""
        for node in NODES:
            state = self.status(node)
            if state is None:
                continue
            nodes, dc, where = state
            if len(nodes) == 3 and all(n.get("online") == "true" for n in nodes.values()) \
                    and dc is not None and len(where) == 1:
                return int(where[0][-1])
        return None

    def state_file(self, node: int) -> Path:
        return self.node_dir(node) / "run" / "Dummy-dummy.state"

    # ------------------------------------------------------------------ teardown
    def down(self) -> None:
        for node in NODES:
            if Path(f"/run/netns/{self.ns(node)}").exists():
                with contextlib.suppress(RuntimeError, OSError, ValueError):
                    self.kill(node)
        for name in [self.switch, *(self.ns(n) for n in NODES)]:
            run("ip", "netns", "del", name, check=False)
        if self.installed_agent:
            AGENT.unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
