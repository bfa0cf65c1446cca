"""docs/installation.md, run: every ```sh block of the page, in order, on three hosts made of
namespaces, as the line before the block says (`*on the build machine:*`: the machine that
builds the wheelhouse, here this checkout; `*on hv1, hv2, hv3:*`: on each of those hosts, one
after the other).

A host here is a network namespace (`rfd-hvN`, two veths: ring0 10.0.0.N and ring1 10.0.1.N on
bridges in the switch namespace `rfd-sw`) with its own mount and UTS namespaces: its host name
is hvN, and /etc, /opt, /usr/local, /usr/sbin, /var, /root and /run are overlays whose upper
layers are this test's directories, so each host has its own files and the machine's are never
written. The
commands run as root with bash (`set -euo pipefail`) through `nsenter`.

What the lab has not got is replaced by the stand-ins of tests/fixtures/doclab (first in PATH,
each described in its README.md): systemctl (no systemd: it runs the units' ExecStart), ssh
(runs the command in the other host's namespaces), apt-get (installs nothing; checks that each
package exists in Debian), the BMCs behind fence_ipmilan and fence_redfish (a power cut kills
every process of the host, power on starts its enabled units), modprobe (never loads a module),
mount of the NFS export (a directory shared by the three hosts), virsh (no libvirtd). Two
substitutions are made in the page's text, because the lab has no KVM and no hardware
watchdog: `hypervisor: qemu:///system` becomes the process hypervisor (VMs are processes, their
state directory /var/lib/ringfence/vms shared by the three hosts as libvirt's disks are), and
the agents' /etc/default/ringfence gets `RINGFENCE_OPTIONS=--watchdog process` before install.sh
writes it. Everything else (openssl, etcd and etcdctl with TLS, nftables, install.sh, ringfence,
logrotate) is the real program.

Everything started is stopped at the end, pass or fail: every process of the three hosts'
namespaces (they are found by namespace, so nothing of other tests is touched), then the
namespaces. Root only (marker `lab`); a few minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ringfence.lab import netns

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "installation.md"
STAND_INS = ROOT / "tests" / "fixtures" / "doclab"
PREFIX = "rfd-"
HOSTS = ("hv1", "hv2", "hv3")
BMC = {"10.9.0.1": "hv1", "10.9.0.2": "hv2", "10.9.0.3": "hv3"}
OVERLAID = ("/etc", "/opt", "/usr/local", "/usr/sbin", "/var", "/root", "/run")
SUBSTITUTIONS = {"hypervisor: qemu:///system": "hypervisor: process"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Block:
    line: int
    where: tuple[str, ...]
    text: str


def blocks(text: str) -> list[Block]:
    """Every ```sh block with the `<!-- on: ... -->` line before it (ValueError without)."""
    found: list[Block] = []
    for match in re.finditer(r"^```sh\n(.*?)^```", text, re.M | re.S):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        where = re.fullmatch(r"\*on (the build machine|\w+(?:, \w+)*):\*", before.strip())
        if where is None:
            raise ValueError(f"docs/installation.md line {line}: a sh block without a "
                             "`*on HOST, HOST:*` (or `*on the build machine:*`) line before it")
        hosts = where.group(1)
        found.append(Block(line, ("build",) if hosts == "the build machine"
                           else tuple(hosts.split(", ")), match.group(1)))
    return found


def test_every_block_says_where_it_runs() -> None:  # not `lab`: the page's text only
    found = blocks(DOC.read_text(encoding="utf-8"))
    assert len(found) > 20
    for block in found:
        assert set(block.where) <= {"build", *HOSTS}, block


class Lab:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.dir = work / "lab"
        self.holders: dict[str, subprocess.Popen[str]] = {}
        self.bin = work / "bin"

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}:{PATH}", "RFD_LAB": str(self.dir), "HOME": "/root",
                "LANG": "C.UTF-8", "TERM": "dumb", "COLUMNS": "120"}

    def build(self) -> None:
        for sub in ("pids", "power", "bmc", "shared"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "log").touch()
        self.bin.mkdir()
        for tool in STAND_INS.iterdir():
            if tool.name != "README.md" and tool.name != "fence_agent":
                shutil.copy(tool, self.bin / tool.name)
        for name in ("fence_ipmilan", "fence_redfish"):
            shutil.copy(STAND_INS / "fence_agent", self.bin / name)
        for address, host in BMC.items():
            (self.dir / "bmc" / address).write_text(host + "\n")
        switch = f"{PREFIX}sw"
        netns.add(switch)
        for k in (0, 1):
            netns.ip("link", "add", f"br{k}", "type", "bridge", ns=switch)
            netns.ip("link", "set", f"br{k}", "up", ns=switch)
        for n, host in enumerate(HOSTS, start=1):
            ns = f"{PREFIX}{host}"
            netns.add(ns)
            netns.ip("link", "set", "lo", "up", ns=ns)
            for k in (0, 1):
                inside, outside = f"rfd{n}{k}h", f"rfd{n}{k}s"
                netns.ip("link", "add", inside, "type", "veth", "peer", "name", outside)
                netns.ip("link", "set", inside, "netns", ns)
                netns.ip("link", "set", outside, "netns", switch)
                netns.ip("link", "set", inside, "name", f"ring{k}", ns=ns)
                netns.ip("addr", "add", f"10.0.{k}.{n}/24", "dev", f"ring{k}", ns=ns)
                netns.ip("link", "set", f"ring{k}", "up", ns=ns)
                netns.ip("link", "set", outside, "master", f"br{k}", ns=switch)
                netns.ip("link", "set", outside, "up", ns=switch)
            self._hold(host, ns)

    def _hold(self, host: str, ns: str) -> None:
        mounts = []
        for directory in OVERLAID:
            name = directory.strip("/").replace("/", "_")
            upper, work = self.work / host / "upper" / name, self.work / host / "work" / name
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            mounts.append(f"/usr/bin/mount -t overlay overlay -o lowerdir={directory},"
                          f"upperdir={upper},workdir={work} {directory}")
        script = "\n".join([
            "set -e", "/usr/bin/mount --make-rprivate /", *mounts,
            f"hostname {host}", "mkdir -p /etc/default",
            # The process VMs' state, on "shared storage" as libvirt's disks would be (a
            # process VM moves between hosts through its state directory)
            f"mkdir -p {self.dir}/shared-vms", "install -d -m 0700 /var/lib/ringfence",
            "mkdir -p /var/lib/ringfence/vms",
            f"/usr/bin/mount --bind {self.dir}/shared-vms /var/lib/ringfence/vms",
            # ringfence runs fence agents from /usr/sbin, where fence-agents puts them
            f"cp {self.bin}/fence_ipmilan {self.bin}/fence_redfish /usr/sbin/",
            f"printf 'RINGFENCE_HOST={host}\\nRINGFENCE_OPTIONS=\"--watchdog process\"\\n'"
            " > /etc/default/ringfence",
            "echo ready", "exec sleep infinity"])
        holder = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--mount", "--uts",
                                   "--propagation", "private", "bash", "-c", script],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=self.env())
        self.holders[host] = holder
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise AssertionError(f"host {host} did not start: {holder.communicate()[1]}")
        (self.dir / "pids" / host).write_text(f"{holder.pid}\n")

    def run(self, where: str, text: str, line: int) -> None:
        script = "set -euo pipefail\n" + text
        for old, new in SUBSTITUTIONS.items():
            script = script.replace(old, new)
        if where == "build":
            argv = ["bash", "-c", script]
            cwd: Path | None = ROOT
        else:
            argv = ["nsenter", "-t", str(self.holders[where].pid), "-m", "-n", "-u", "--",
                    "bash", "-c", "cd /root\n" + script]
            cwd = None
        done = subprocess.run(argv, cwd=cwd, env=self.env(), capture_output=True, text=True,
                              timeout=600, check=False)
        log = self.dir / "blocks.log"
        with log.open("a") as out:
            out.write(f"=== line {line} on {where}: exit {done.returncode}\n{done.stdout}"
                      f"{done.stderr}")
        if done.returncode != 0:
            raise AssertionError(
                f"docs/installation.md line {line}, on {where}: exit {done.returncode}\n"
                f"--- block\n{text}--- stdout\n{done.stdout[-3000:]}\n--- stderr\n"
                f"{done.stderr[-3000:]}\n--- stand-ins' log\n"
                f"{(self.dir / 'log').read_text()[-1500:]}")

    def teardown(self) -> None:
        for host in HOSTS:
            ns = f"{PREFIX}{host}"
            if netns.exists(ns):
                with contextlib.suppress(netns.LabError):
                    netns.kill_all(netns.inode(ns))
        for holder in self.holders.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                holder.wait(timeout=10)
        for name in (*(f"{PREFIX}{h}" for h in HOSTS), f"{PREFIX}sw"):
            if netns.exists(name):
                with contextlib.suppress(netns.LabError):
                    netns.kill_all(netns.inode(name))
                netns.delete_quiet(name)


# The real programs the page has the operator run, and the Debian packages that bring them:
# a fresh machine may lack some (installed here, as root, like the QEMU tests' packages).
TOOLS = {"etcdctl": "etcd-client", "logrotate": "logrotate", "openssl": "openssl",
         "nft": "nftables"}


def ensure_tools() -> None:
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in (["apt-get", "install", "-y", "-qq", *missing],
                    ["sh", "-c", "apt-get update -qq && apt-get install -y -qq "
                     + " ".join(missing)]):
        done = subprocess.run(attempt, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode == 0:
            return
    pytest.fail(f"apt-get install {' '.join(missing)} failed: "
                f"{(done.stderr or done.stdout).strip()[-600:]}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the installation walk-through runs as root (namespaces)")
    ensure_tools()
    for name in (*(f"{PREFIX}{h}" for h in HOSTS), f"{PREFIX}sw"):
        if netns.exists(name):
            pytest.fail(f"namespace {name} exists already: another run of this test?")
    built = Lab(tmp_path)
    try:
        built.build()
        yield built
    finally:
        built.teardown()
    # Only this test's own namespaces are judged (other lab tests may run meanwhile).
    assert not [n for n in netns.names() if n.startswith(PREFIX)], netns.names()
    leftover = [pid for pid in os.listdir("/proc") if pid.isdigit()
                and str(tmp_path).encode() in _cmdline(pid)]
    assert not leftover, f"processes left behind: {leftover}"


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.lab
def test_the_installation_walk_through_runs(lab: Lab) -> None:
    for block in blocks(DOC.read_text(encoding="utf-8")):
        for where in block.where:
            lab.run(where, block.text, block.line)
