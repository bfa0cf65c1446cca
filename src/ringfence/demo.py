"""`ringfence demo`: a real cluster on this machine, a real fault, a real failover.

N host agents run as separate processes (`ringfence agent`), talking UDP heartbeats over
loopback addresses (127.0.1.i and 127.0.2.i: two heartbeat networks), sharing one SQLite
store, running VMs as local processes (the `process` hypervisor) that append to one shared
"disk" file, each watched by a process watchdog. Each host has a power fence agent (this
module, run as a ClusterLabs-style fence agent: it kills or restarts the host's processes),
unless `--no-fencing`: then recovery takes the watchdog path.

The fault (default: power-off of the busiest host, i.e. SIGKILL of its agent, its VMs and its
watchdog; `hang` stops all of them with SIGSTOP, `agent_hang` only the agent, `vm_crash` kills
one VM) comes `--fault-at` seconds after every VM runs. The ground truth is the disk file:
which host wrote for which VM when. Downtime is the gap in a VM's writes; a split brain is two
hosts writing for one VM in overlapping intervals, whatever the agents believe.

With `--vms-kind qemu` (`ringfence.demo_qemu`) the VMs are real QEMU guests under one
libvirtd per host, each host a network namespace, and the ground truth is the guests' own
heartbeat disks; the rest of the demo is the same.

Everything the demo starts it stops: on Ctrl-C, on SIGTERM and SIGHUP (`timeout`, a closed
terminal: handled exactly as Ctrl-C), at the end of `--duration`, and on errors; then it writes
its summary and report and removes its pointer for `ringfence status`. A signal that comes
while it stops is ignored, so that the stop itself is never cut short.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ringfence.agent.journal import journal_file, read_journal
from ringfence.fence.demo_power import pids_of as _pids_of
from ringfence.status import remove_demo_pointer, write_demo_pointer

FAULTS = ("power_off", "hang", "agent_hang", "vm_crash", "none")


@dataclass
class DemoOptions:
    hosts: int = 3
    vms: int = 6
    fault: str = "power_off"
    fault_at: float = 20.0
    duration: float | None = None
    port: int = 8080
    fencing: bool = True
    browser: bool = True
    as_json: bool = False
    workdir: Path | None = None
    etcd_endpoints: list[str] | None = None  # default: the embedded SQLite store
    migration_delay: float = 0.0  # how long a process VM's migration "copy" takes (tests)
    fault_target: str = "busiest"  # busiest, leader, or a host's name
    alert_webhooks: list[str] = field(default_factory=list)  # a webhook + deadman route each
    vms_kind: str = "process"  # or "qemu": real guests under libvirt (ringfence.demo_qemu)


@dataclass
class Fault:
    t: float
    kind: str
    host: str | None
    wall: float
    vm: str | None = None


@dataclass
class DemoHost:
    name: str
    index: int
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.workdir = options.workdir or Path(
            os.environ.get("TMPDIR", "/tmp")) / f"ringfence-demo-{os.getpid()}"
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)  # key, store, journals
        self.state = self.workdir / "state"
        self.disk = self.workdir / "disk.jsonl"
        self.power = self.workdir / "power"
        self.power.mkdir(exist_ok=True)
        self.config_path = self.workdir / "cluster.yaml"
        self.hosts = [DemoHost(f"host{i + 1}", i) for i in range(options.hosts)]
        self.vms = [f"vm{i + 1}" for i in range(options.vms)]
        self.faults: list[Fault] = []
        self.started = time.time()
        self.ended: float | None = None  # when stop() began: the end of the run
        self.stopping = False
        self.token_file = self.workdir / "api-tokens"  # the run's admin token (the API)
        self.api: str | None = None  # the API's base URL, once it listens
        self.qemu: Any = None  # a demo_qemu.QemuWorld with --vms-kind qemu
        if options.vms_kind == "qemu":
            from ringfence.demo_qemu import QemuWorld, check_ready

            image = check_ready(options.fencing)
            self.qemu = QemuWorld(self.workdir, [h.name for h in self.hosts], self.vms, image,
                                  self.disk)
            # QEMU guests beat every 200 ms (and slower while TCG is busy booting others)
            self.GAP, self.RUNNING_WINDOW = 0.9, 2.0

    # ------------------------------------------------------------------ set-up
    def write_cluster(self) -> None:
        key = self.workdir / "cluster.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        key.chmod(0o600)  # also when an earlier run left the file
        ports = [_free_udp_port("127.0.1.1"), _free_udp_port("127.0.2.1")]
        fence_script = self.workdir / "fence_demo"
        fence_script.write_text(f"#!/bin/sh\nexec {sys.executable} -m "
                                f"ringfence.fence.demo_power \"$@\"\n")
        fence_script.chmod(0o755)
        cluster: dict[str, Any] = {
            "name": "demo",
            "key_file": str(key),
            "timing": {"heartbeat_interval": "200ms", "host_lease_ttl": "6s",
                       "watchdog_timeout": "4s", "fence_timeout": "10s"},
            "networks": [{"name": "ring0", "role": "heartbeat", "port": ports[0]},
                         {"name": "ring1", "role": "heartbeat", "port": ports[1]}],
            "hosts": [{"name": h.name, "cpus": 16, "memory": "64GiB", "hypervisor": "process",
                       "interfaces": {"ring0": {"address": f"127.0.1.{h.index + 1}"},
                                      "ring1": {"address": f"127.0.2.{h.index + 1}"}}}
                      for h in self.hosts],
            "store": ({"kind": "etcd", "endpoints": self.options.etcd_endpoints,
                       "bootstrap": self.hosts[0].name}
                      if self.options.etcd_endpoints else
                      {"kind": "sqlite", "path": str(self.workdir / "store.db"),
                       "bootstrap": self.hosts[0].name}),
            "vms": [{"name": vm, "cpus": 1, "memory": "1GiB",
                     "host": self.hosts[i % len(self.hosts)].name,
                     "priority": 100 if i == 0 else 0}
                    for i, vm in enumerate(self.vms)],
            "policy": {"host_failures_to_tolerate": 1},
        }
        if self.qemu is not None:
            for entry in cluster["hosts"]:
                entry.update(self.qemu.host_entry(entry["name"]))
            for entry in cluster["vms"]:
                entry.update(self.qemu.vm_entry(entry["name"]))
        if self.options.alert_webhooks:
            cluster["alerts"] = [
                *({"kind": "webhook", "name": f"webhook{i + 1}", "url": url}
                  for i, url in enumerate(self.options.alert_webhooks)),
                *({"kind": "deadman", "name": f"deadman{i + 1}", "url": url, "every": "5s"}
                  for i, url in enumerate(self.options.alert_webhooks))]
        if self.options.fencing:
            cluster["fencing"] = {h.name: {"agent": str(fence_script),
                                           "params": {"plug": h.name,
                                                      "workdir": str(self.workdir),
                                                      **(self.qemu.fence_params(h.name)
                                                         if self.qemu is not None else {})}}
                                  for h in self.hosts}
        self.config_path.write_text(yaml.safe_dump(cluster, sort_keys=False))
        write_demo_pointer(self.config_path)

    def start_host(self, host: DemoHost) -> None:
        (self.power / f"{host.name}.off").unlink(missing_ok=True)
        host.log = self.workdir / f"{host.name}.log"
        argv = [sys.executable, "-m", "ringfence.cli", "agent", "--config",
                str(self.config_path), "--host", host.name, "--state-dir", str(self.state),
                "--watchdog", "process", "--disk-file", str(self.disk),
                *(["--migration-delay", f"{self.options.migration_delay:g}"]
                  if self.options.migration_delay else [])]
        if self.qemu is not None:  # the agent runs in its host's namespace
            argv.append("--libvirt-unsafe-migration")  # the lab's "shared" disks are local
            host.process = self.qemu.start_agent(host.name, argv, host.log)
            return
        with host.log.open("ab") as log:
            host.process = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

    # ------------------------------------------------------------------ ground truth
    def writes(self) -> list[dict[str, Any]]:
        records = []
        with contextlib.suppress(OSError), self.disk.open(encoding="utf-8") as disk:
            for line in disk:
                with contextlib.suppress(json.JSONDecodeError):
                    records.append(json.loads(line))
        return records

    def placement_now(self, window: float | None = None) -> dict[str, str]:
        """Which host wrote for each VM in the last `window` seconds (default:
        `RUNNING_WINDOW`)."""
        window = self.RUNNING_WINDOW if window is None else window
        now = time.time()
        placed: dict[str, str] = {}
        for record in self.writes():
            if record["t"] >= now - window:
                placed[record["vm"]] = record["host"]
        return placed

    def busiest(self) -> str:
        counts: dict[str, int] = {}
        for host in self.placement_now().values():
            counts[host] = counts.get(host, 0) + 1
        return max(sorted(counts), key=lambda h: counts[h]) if counts else self.hosts[0].name

    def leader(self) -> str | None:
        """The host holding the store's `manager` key now (None: none, or no store)."""
        from ringfence.config import load_cluster
        from ringfence.core.leases import MANAGER_KEY
        from ringfence.errors import ConfigError
        from ringfence.store.base import StoreUnavailable
        from ringfence.store.factory import open_store

        try:
            store = open_store(load_cluster(self.config_path), host=None)
        except ConfigError:
            return None
        try:
            kv = store.get(MANAGER_KEY)
        except StoreUnavailable:
            return None
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
        host = kv.value.get("host") if kv is not None and isinstance(kv.value, dict) else None
        return host if isinstance(host, str) else None

    def target(self) -> str:
        """The host `--fault-target` names: busiest, the leader (the busiest when there is
        none), or a host by name."""
        if self.options.fault_target == "busiest":
            return self.busiest()
        if self.options.fault_target == "leader":
            return self.leader() or self.busiest()
        return self.options.fault_target

    # ------------------------------------------------------------------ faults
    def inject(self, kind: str) -> None:
        now = time.time()
        if kind == "none":
            return
        if self.qemu is not None:
            self._inject_qemu(kind, now)
            return
        if kind == "vm_crash":
            vm = self.vms[0]
            host = self.placement_now().get(vm)
            for pid in _pids_of(self.workdir, host or "", vm=vm):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.faults.append(Fault(now - self.started, kind, host, now, vm))
            return
        victim = self.target()
        pids = _pids_of(self.workdir, victim)
        if kind == "agent_hang":  # only the agent freezes; its VMs and watchdog run on
            frozen = next(h for h in self.hosts if h.name == victim)
            pids = [frozen.process.pid] if frozen.process is not None else []
        sig = signal.SIGKILL if kind == "power_off" else signal.SIGSTOP
        if kind == "power_off":
            (self.power / f"{victim}.off").write_text("power cut by the demo\n")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        self.faults.append(Fault(now - self.started, kind, victim, now))

    def _inject_qemu(self, kind: str, now: float) -> None:
        if kind == "vm_crash":
            vm = self.vms[0]
            self.faults.append(Fault(now - self.started, kind, self.qemu.crash(vm), now, vm))
            return
        victim = self.target()
        if kind == "power_off":
            (self.power / f"{victim}.off").write_text("power cut by the demo\n")
        agent = next(h.process for h in self.hosts if h.name == victim)
        self.qemu.fault(kind, victim, agent.pid if agent is not None else None)
        self.faults.append(Fault(now - self.started, kind, victim, now))

    def handle_power_requests(self) -> None:
        """The demo's power controller: a fence agent asked to power a host on again."""
        for host in self.hosts:
            request = self.power / f"{host.name}.on"
            if request.exists():
                request.unlink(missing_ok=True)
                if host.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(host.process.pid, signal.SIGKILL)
                    host.process.wait()
                if self.qemu is not None:
                    self.qemu.power_off(host.name)  # whatever was left (e.g. a frozen host)
                    self.qemu.power_on(host.name)
                self.start_host(host)

    # ------------------------------------------------------------------ summary
    RUNNING_WINDOW = 1.0
    """A VM runs at the end of the run only if it wrote within its last second."""
    GAP = 0.35
    """A pause between two writes (every 100 ms) longer than this is downtime."""

    def summary(self) -> dict[str, Any]:
        """Where each VM ran before the first fault and at the end of the run, and how long
        it was down, from the VMs' own writes to the disk file (the ground truth).

        The end of the run is when `stop` began (or now, while it runs). A VM that did not
        write in the last second of it is not running at the end (`host_after` None), and its
        downtime counts from its last write to the end; one that never wrote was down for the
        whole run. Downtime is every pause between writes longer than `GAP` (after the first
        fault, when there was one), plus that tail. Without a fault, `host_before` is where the
        VM last wrote."""
        fault = self.faults[0] if self.faults else None
        end = self.ended if self.ended is not None else time.time()
        records = [r for r in self.writes() if r["t"] <= end]
        by_vm: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_vm.setdefault(record["vm"], []).append(record)
        vms: dict[str, Any] = {}
        for vm in self.vms:
            mine = sorted(by_vm.get(vm, []), key=lambda r: r["t"])
            cut = fault.wall if fault else end  # without a fault: where it ran last
            before = [r for r in mine if r["t"] <= cut]
            host_before = before[-1]["host"] if before else None
            running = bool(mine) and mine[-1]["t"] >= end - self.RUNNING_WINDOW
            host_after = mine[-1]["host"] if running else None
            if not mine:
                downtime = end - self.started
            else:
                since = fault.wall - 1.0 if fault else self.started
                gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(mine) if b["t"] > since]
                downtime = sum((g for g in gaps if g > self.GAP), 0.0)
                if not running:
                    downtime += end - mine[-1]["t"]
            vms[vm] = {"host_before": host_before, "host_after": host_after,
                       "downtime_s": round(downtime, 1)}
        return {
            "hosts": len(self.hosts),
            "faults": [{"t": round(f.t, 1), "kind": f.kind, "host": f.host,
                        **({"vm": f.vm} if f.vm else {})} for f in self.faults],
            "vms": vms,
            "split_brain": bool(split_brains(records)),
            "split_brains": split_brains(records),
            "report": str(self.workdir / "report.md"),
            "workdir": str(self.workdir),
            "api": self.api,
            "api_token_file": str(self.token_file) if self.api else None,
        }

    def journal(self) -> list[dict[str, Any]]:
        entries = []
        for host in self.hosts:
            entries += read_journal(journal_file(self.state, host.name))
        return sorted(entries, key=lambda e: (e["t"], e["by"], e["seq"]))

    def write_report(self, summary: dict[str, Any]) -> Path:
        from ringfence.config import load_cluster
        from ringfence.journal.downtime import measured, runs_from_writes
        from ringfence.journal.events import from_entries
        from ringfence.journal.incidents import build_incidents, incident_to_dict
        from ringfence.journal.report import (
            ReportContext,
            render_html,
            render_index_html,
            render_index_markdown,
            render_markdown,
        )

        path = Path(summary["report"])
        # Written before the teardown (see `_run`): the demo's own clean shutdown of every
        # host is planned work, and is not in the report's stream at all.
        end = self.ended if self.ended is not None else time.time()
        events = [e for e in from_entries(self.journal(), source=str(self.state)) if e.t <= end]
        fault_at = self.faults[0].wall if self.faults else self.started
        runs = runs_from_writes(((r["t"], r["vm"], r["host"]) for r in self.writes()
                                 if r["t"] <= end), self.GAP)
        incidents = list(measured(build_incidents(events, stream_end=end), runs, end))
        truth = [f"Fault: {fault['kind']} of {fault.get('host') or fault.get('vm')} at "
                 f"{fault['t']:.1f} s after the demo started." for fault in summary["faults"]]
        truth.append(f"Split brain (from the VMs' own writes to the shared disk): "
                     f"{'YES' if summary['split_brain'] else 'no'}.")
        moved = [f"{vm} {info['downtime_s']:.1f} s ({info['host_before'] or 'never ran'} → "
                 f"{info['host_after'] or 'DOWN at the end'})"
                 for vm, info in summary["vms"].items()
                 if info["downtime_s"] or info["host_before"] != info["host_after"]]
        truth.append("Downtime measured in the VMs' own writes: "
                     + (", ".join(moved) if moved else "none") + ".")
        ctx = ReportContext(cluster="demo", simulated=False,
                            source=f"the demo hosts' journals in {self.state}",
                            config=load_cluster(self.config_path),
                            incidents=tuple(incidents),
                            extra=(("Ground truth (the VMs' own writes)", tuple(truth)),))
        after = [i for i in incidents if i.last_event_at >= fault_at - 1.0]
        main = next((i for i in after if i.severity != "warning"), after[0] if after else None)
        if main is not None:
            markdown, page = render_markdown(main, ctx), render_html(main, ctx)
        else:
            markdown = (render_index_markdown(incidents, ctx) + "\n"
                        + "\n".join(f"- {line}" for line in truth) + "\n")
            page = render_index_html(incidents, ctx)
        path.write_text(markdown, encoding="utf-8")
        path.with_suffix(".html").write_text(page, encoding="utf-8")
        # The same incidents as data (what the report says, for tools and tests).
        path.with_name("incidents.json").write_text(json.dumps(
            [incident_to_dict(i, with_events=False) for i in incidents], indent=2,
            ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if self.ended is None:
            self.ended = time.time()
        self.stopping = True
        for host in self.hosts:
            if host.process is not None and host.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(host.process.pid, signal.SIGTERM)
        deadline = time.time() + 10
        for host in self.hosts:
            if host.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.process.wait(timeout=max(0.1, deadline - time.time()))
        for host in self.hosts:
            for pid in _pids_of(self.workdir, host.name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
            if host.process is not None and host.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(host.process.pid, signal.SIGKILL)
                host.process.wait()
        if self.qemu is not None:
            self.qemu.close()
        remove_demo_pointer(self.config_path)


def split_brains(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Intervals in which two hosts wrote for one VM (each VM process is one (host, token)
    writer; a clean handover has one writer's last line before the next one's first)."""
    spans: dict[str, dict[tuple[str, int], list[float]]] = {}
    for record in records:
        span = spans.setdefault(record["vm"], {}).setdefault(
            (record["host"], record["token"]), [record["t"], record["t"]])
        span[0] = min(span[0], record["t"])
        span[1] = max(span[1], record["t"])
    found = []
    for vm, writers in sorted(spans.items()):
        items = sorted(writers.items(), key=lambda kv: kv[1][0])
        for i, ((host_a, _), (start_a, end_a)) in enumerate(items):
            for (host_b, _), (start_b, end_b) in items[i + 1:]:
                if host_a != host_b and max(start_a, start_b) < min(end_a, end_b):
                    found.append({"vm": vm, "hosts": [host_a, host_b],
                                  "from": max(start_a, start_b), "to": min(end_a, end_b)})
    return found


# ---------------------------------------------------------------------- dashboard
def serve_api(demo: Demo, port: int) -> Any:
    """The agents' API and dashboard (`ringfence.api`), served for the demo on `port` (0: a
    free port) with an admin token for this run in `<workdir>/api-tokens`. None when the port
    is busy. Returns an `api.server.ApiServer`."""
    import getpass

    from ringfence.agent.journal import FileJournal
    from ringfence.api import StoreSource, create_app
    from ringfence.api.auth import Tokens, write_tokens_file
    from ringfence.api.server import ApiServer
    from ringfence.config import load_cluster
    from ringfence.errors import ConfigError
    from ringfence.store.factory import open_cluster_store

    config = load_cluster(demo.config_path)
    write_tokens_file(demo.token_file, [(secrets.token_urlsafe(32), getpass.getuser(), "admin")])
    # The API's own refusals go to a journal of their own beside the hosts' ones.
    refusals = FileJournal(demo.state / "journal-demo-api.jsonl", "demo-api", echo=None)
    source = StoreSource(config, open_cluster_store(config),
                         journal_files=[refusals.path, *(journal_file(demo.state, h.name)
                                                         for h in demo.hosts)],
                         record=refusals.record)
    server = ApiServer(create_app(source, tokens=Tokens(demo.token_file), title="ringfence demo"),
                       "127.0.0.1", port)
    try:
        server.start()
    except ConfigError:
        return None
    demo.api = server.url
    return server


# ---------------------------------------------------------------------- main
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_demo(options: DemoOptions) -> int:
    """Run the demo; see the module docstring. Returns the exit code: 1 after a split brain;
    128 + the signal's number when a signal ended a run that had a `--duration`; else 0."""
    demo = Demo(options)
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if received or demo.stopping:
            return  # already stopping: let the stop finish
        received.append(signum)
        raise KeyboardInterrupt  # SIGTERM and SIGHUP take Ctrl-C's path

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        return _run(demo, options, received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(demo: Demo, options: DemoOptions, received: list[int]) -> int:
    def say(text: str) -> None:
        if not options.as_json:
            print(text, flush=True)

    server = None
    interrupted = False
    if demo.qemu is not None:
        say("starting one libvirtd per host and defining the guests ...")
        demo.qemu.start()  # torn down by itself if it fails
    try:
        demo.write_cluster()
        kind = ("QEMU guests (TCG) under one libvirtd per host namespace"
                if demo.qemu is not None else "process VMs")
        say(f"ringfence demo: {options.hosts} hosts, {options.vms} VMs, SQLite store, {kind}; "
            f"work dir {demo.workdir}")
        for host in demo.hosts:
            demo.start_host(host)
        if options.port:
            server = serve_api(demo, options.port)
            if server is None:
                say(f"dashboard: port {options.port} is busy; choose another with --port "
                    f"(ringfence status works meanwhile)")
            else:
                url = f"{server.url}/"
                say(f"dashboard and API: {url}   (admin token in {demo.token_file}; "
                    f"ringfence status works too)")
                if options.browser and not options.as_json:
                    with contextlib.suppress(Exception):
                        webbrowser.open(url)
        boot_limit = 60 if demo.qemu is None else 180
        deadline = time.time() + boot_limit
        while len(demo.placement_now()) < len(demo.vms):
            if time.time() > deadline:
                say(f"not every VM started within {boot_limit} s; see the host logs in the "
                    f"work dir")
                break
            time.sleep(0.25)
        say(f"all {len(demo.placement_now())} VMs run: {_where(demo)}")
        fault_time = time.time() + max(0.0, options.fault_at - (time.time() - demo.started))
        end = demo.started + options.duration if options.duration else None
        last_view = ""
        while end is None or time.time() < end:
            if not demo.faults and time.time() >= fault_time and options.fault != "none":
                demo.inject(options.fault)
                fault = demo.faults[-1]
                say(f"FAULT at {fault.t:.1f}s: {fault.kind} of {fault.host or fault.vm}")
            demo.handle_power_requests()
            view = _where(demo)
            if view != last_view:
                say(f"{time.time() - demo.started:6.1f}s  {view}")
                last_view = view
            time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        demo.stopping = True  # from here on, signals wait for the stop (see run_demo)
        if received:
            say(f"signal {signal.Signals(received[0]).name}: stopping everything the demo "
                "started")
        demo.ended = time.time()
        try:
            # The report first: the teardown (every host shut down cleanly) is not part of
            # what happened in the run.
            summary = demo.summary()
            report = demo.write_report(summary)
        finally:
            demo.stop()
            if server is not None:
                server.stop()
    if options.as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        for vm, info in summary["vms"].items():
            if info["host_before"] != info["host_after"] or info["downtime_s"]:
                say(f"{vm}: {info['host_before'] or 'never ran'} -> "
                    f"{info['host_after'] or 'DOWN at the end'}, down {info['downtime_s']:.1f}s")
        say(f"split brain: {'YES' if summary['split_brain'] else 'no'}")
        say(f"incident report: {report}")
    if summary["split_brain"]:
        return 1
    if interrupted and options.duration:
        return 128 + (received[0] if received else signal.SIGINT)
    return 0


def _where(demo: Demo) -> str:
    placed = demo.placement_now()
    return ", ".join(f"{vm}@{placed.get(vm, 'DOWN')}" for vm in demo.vms)


