"""The `ringfence` command line (see contracts/cli.md for the public interface).

Exit codes everywhere: 0 success, 1 the operation ran and reports a failure, 2 bad input. Bad
input never shows a traceback: a `ConfigError` names the file, line and field path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ringfence import __version__
from ringfence.errors import ConfigError
from ringfence.paths import PathArg

INPUT, INPUT_ANY = PathArg("input"), PathArg("input_any")
OUTPUT_FILE, OUTPUT_DIR, DATA_FILE = PathArg("output_file"), PathArg("output_dir"), \
    PathArg("data_file")
_STATE_DIR = "/var/lib/ringfence"

if TYPE_CHECKING:
    from ringfence.config import ClusterConfig
    from ringfence.journal.events import Event
    from ringfence.journal.report import IncidentSource

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

MAX_SEED = 2**32 - 1  # as ringfence.sim.scenario.MAX_SEED (not imported: it pulls in pydantic)
MAX_RUN = 86400.0  # as ringfence.sim.scenario.MAX_RUN


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (exit 2 naming the option)."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {value}")
        return value

    return whole


def _url(text: str) -> str:
    from ringfence.alerts.models import check_url

    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size_per_second(text: str) -> int:
    """An argparse type: a size per second from 1 MiB to 1 TiB (1GiB, 512MiB)."""
    from ringfence.units import format_size, parse_size

    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not (1 << 20) <= value <= (1 << 40):
        raise argparse.ArgumentTypeError(f"expected a size from 1MiB to 1TiB (a rate per "
                                         f"second), got {text!r} ({format_size(value)})")
    return value


def _vm_launcher(text: str) -> Callable[[str], list[str]]:
    """An argparse type: `--vm-launcher`'s command template (`launcher_from_template`)."""
    from ringfence.hypervisor.process import launcher_from_template

    if len(text) > 1000:
        raise argparse.ArgumentTypeError("expected a command prefix of at most 1000 characters")
    try:
        return launcher_from_template(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a duration (200ms, 6s, 2m, 1h) from `low` (excluded if `above`) to
    `high`, in seconds."""

    def seconds(text: str) -> float:
        from ringfence.units import format_duration, parse_duration

        try:
            value = parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if (value <= low if above else value < low) or value > high:
            shown = "longer than" if above else "at least"
            raise argparse.ArgumentTypeError(
                f"expected a duration {shown} {format_duration(low)} and at most "
                f"{format_duration(high)}, got {text!r}")
        return value

    return seconds


_SEED = _whole(0, MAX_SEED)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 with one clear line (they already do) and never
    print a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ringfence", description="High availability for VM host clusters.")
    parser.add_argument("--version", action="version", version=f"ringfence {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    sim = commands.add_parser("simulate", help="run a scenario file on simulated time")
    sim.add_argument("scenario", metavar="SCENARIO.yaml", type=INPUT)
    sim.add_argument("--seed", type=_SEED, default=None, help="override the file's seed")
    sim.add_argument("--json", action="store_true", help="print the result as JSON")
    sim.add_argument("--timeline", action="store_true", help="print every journaled event")
    sim.add_argument("--report", default=None, metavar="DIR", type=OUTPUT_DIR,
                     help="write the run's incident reports (Markdown and HTML) into DIR "
                          "(created if its parent exists; files of the same names replaced)")
    fuzz = commands.add_parser("fuzz", help="random clusters and fault schedules against the "
                                             "safety checker")
    fuzz.add_argument("--runs", type=_whole(1, 1_000_000), default=100)
    fuzz.add_argument("--seed", type=_SEED, default=0)
    fuzz.add_argument("--hosts", type=_whole(2, 256), default=None,
                      help="hosts per cluster (default 2-16)")
    fuzz.add_argument("--vms", type=_whole(1, 20_000), default=None,
                      help="VMs per cluster (default random)")
    fuzz.add_argument("--duration", type=_seconds(10.0, MAX_RUN), default=180.0,
                      help="simulated length of each run (default 180s)")
    fuzz.add_argument("--events", type=_whole(1, 10_000), default=12,
                      help="faults per run, on average")
    fuzz.add_argument("--out", default="fuzz-out", type=OUTPUT_DIR,
                      help="where a reproducing scenario goes")
    fuzz.add_argument("--json", action="store_true")

    demo = commands.add_parser("demo", help="a real cluster on this machine, a fault, a failover")
    demo.add_argument("--hosts", type=_whole(2, 9), default=3)
    demo.add_argument("--vms", type=_whole(1, 16 * 9), default=6, help="at most 16 per host")
    demo.add_argument("--fault", default="power_off",
                      help="power_off (default: the busiest host's agent, VMs and watchdog "
                           "die), hang (all of them freeze, the watchdog too), agent_hang (only "
                           "the agent freezes), vm_crash or none")
    demo.add_argument("--fault-target", default="busiest", metavar="busiest|leader|HOST",
                      help="the host the fault hits: the one running most VMs (default), the "
                           "cluster's leader, or a host by name (host1, host2 …)")
    demo.add_argument("--alert-webhook", action="append", default=[], metavar="URL",
                      type=_url, help="deliver alerts to this webhook and ping it as a "
                                      "dead-man's switch every 5s (repeatable)")
    demo.add_argument("--fault-at", type=_seconds(0.0, 3600.0), default=20.0,
                      help="when, counted from the demo's start (and not before every VM "
                           "runs; default 20s)")
    demo.add_argument("--duration", type=_seconds(0.0, MAX_RUN, above=True), default=None,
                      help="stop after this long (e.g. 60s)")
    demo.add_argument("--port", type=_whole(0, 65535), default=8080,
                      help="dashboard port (0: none)")
    demo.add_argument("--no-browser", action="store_true")
    demo.add_argument("--vms-kind", choices=["process", "qemu"], default="process",
                      help="VMs as local processes (default), or real QEMU guests under one "
                           "libvirtd per host namespace (root; scripts/install-qemu first; "
                           "software emulation: the guests take ~20 s to boot)")
    demo.add_argument("--no-fencing", action="store_true",
                      help="no power fence agents: recovery takes the watchdog path")
    demo.add_argument("--json", action="store_true", help="print a JSON summary at the end")

    agent = commands.add_parser("agent", help="run the host agent of one host")
    agent.add_argument("--config", required=True, metavar="CLUSTER.yaml", type=INPUT)
    agent.add_argument("--host", required=True, metavar="NAME")
    agent.add_argument("--state-dir", default=_STATE_DIR, type=OUTPUT_DIR,
                       help="journal, local state and process VMs (default /var/lib/ringfence)")
    agent.add_argument("--watchdog", choices=["auto", "linux", "process"], default="auto",
                       help="auto: /dev/watchdog; process: a supervisor process (demo, tests)")
    agent.add_argument("--unsafe-no-watchdog", action="store_true",
                       help="run without any watchdog (a hung host can not be reset)")
    agent.add_argument("--disk-file", default=None, type=DATA_FILE,
                       help="the process hypervisor's shared disk file (demo, tests)")
    agent.add_argument("--vm-dir", default=None, type=OUTPUT_DIR,
                       help="the process hypervisor's VM state, one directory per host "
                            "(default STATE_DIR/vms; hosts that migrate process VMs to each "
                            "other must share it: demo, tests)")
    agent.add_argument("--migration-bandwidth", type=_size_per_second, default=None,
                       metavar="SIZE",
                       help="the process hypervisor's live migrations copy each VM's memory "
                            "(from the cluster file) at this rate, e.g. 1GiB (demo, tests, the "
                            "lab); with --migration-delay both add up")
    agent.add_argument("--vm-launcher", default=None, type=_vm_launcher, metavar="PREFIX",
                       help="the command prefix that starts a migrated process VM on its "
                            "target host, {host} naming it (the lab: 'ip netns exec NS-{host}')")
    agent.add_argument("--log-json", action="store_true", help="journal lines as JSON on stderr")
    agent.add_argument("--migration-delay", type=_seconds(0.0, 3600.0), default=0.0,
                       metavar="DURATION",
                       help="the process hypervisor's live migrations copy for this long while "
                            "the source keeps running (demo, tests)")
    agent.add_argument("--libvirt-unsafe-migration", action="store_true",
                       help="libvirt hosts: live-migrate guests whose disks libvirt can not "
                            "tell are on shared storage (VIR_MIGRATE_UNSAFE; the QEMU demo's "
                            "hosts share one local file system). Never on a real cluster "
                            "without shared storage")
    agent.add_argument("--bootstrap", action="store_true",
                       help="this host may create the cluster identity in an empty store "
                            "(the first start of a new cluster, or a deliberate re-bootstrap)")
    agent.add_argument("--forget-store", action="store_true",
                       help="forget the store identity this host remembers (only when no VM "
                            "runs here), to join a re-bootstrapped store")
    agent.add_argument("--allow-insecure-secrets", action="store_true",
                       help="run although a secret file (key_file, *_file) is readable by "
                            "others; journals a critical alert at every start")

    vm = commands.add_parser("vm", help="operator actions on a VM (through the store)")
    vm_actions = vm.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    vm_actions.required = True
    for action, text in (("start", "let a stopped VM run again"),
                         ("stop", "stop a VM and keep it stopped"),
                         ("reset", "forget where a VM kept dying (its avoid list and "
                                   "relocation count)")):
        sub = vm_actions.add_parser(action, help=text)
        sub.add_argument("vm")
        sub.add_argument("--config", default=None, type=INPUT)
        sub.add_argument("--operator", default=None, help="your name, for the journal")
    move = vm_actions.add_parser("migrate", help="live-migrate a VM to another host")
    move.add_argument("vm")
    move.add_argument("--to", required=True, metavar="HOST")
    move.add_argument("--config", default=None, type=INPUT)
    move.add_argument("--operator", default=None)
    force = vm_actions.add_parser("force-start", help="override: run a VM on a host "
                                                      "(safety rules still apply)")
    force.add_argument("vm")
    force.add_argument("--host", required=True)
    force.add_argument("--confirm-down", nargs="*", default=[], metavar="HOST",
                       help="without quorum: every other host that could run the VM")
    force.add_argument("--operator", default=None)
    force.add_argument("--config", default=None, type=INPUT)
    force.add_argument("--state-dir", default=None, type=OUTPUT_DIR,
                       help="the local agent's state directory (used without quorum; default "
                            "/var/lib/ringfence)")

    host = commands.add_parser("host", help="operator actions on a host")
    host_actions = host.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    host_actions.required = True
    maint = host_actions.add_parser("maintenance", help="drain a host / return it")
    maint.add_argument("name")
    maint.add_argument("state", choices=["on", "off"])
    maint.add_argument("--config", default=None, type=INPUT)
    maint.add_argument("--operator", default=None)
    for sub in (*(vm_actions.choices[a] for a in ("start", "stop", "reset", "migrate",
                                                   "force-start")), maint):
        sub.add_argument("--wait", type=_seconds(0.0, 300.0), default=10.0, metavar="D",
                         help="wait up to D for the outcome in the journal (default 10s): "
                              "exit 1 if the leader refuses")
        sub.add_argument("--no-wait", action="store_true",
                         help="return once the request is written")

    init = commands.add_parser("init", help="write a complete, commented cluster file and a "
                                            "cluster key for the hosts given")
    init.add_argument("--name", default="cluster", help="the cluster's name (default cluster)")
    init.add_argument("--hosts", required=True, metavar="H=ADDR,...",
                      help="each host and its address on the first heartbeat network (ring0)")
    init.add_argument("--ring1", default=None, metavar="H=ADDR,...",
                      help="each host's address on a second heartbeat network")
    init.add_argument("--store", choices=["etcd", "sqlite"], default="etcd")
    init.add_argument("--out", default="cluster.yaml", type=OUTPUT_FILE,
                      help="the cluster file to write (a new file; default cluster.yaml)")
    init.add_argument("--key", default=None, type=OUTPUT_FILE,
                      help="the key file to write (a new file; default cluster.key next to "
                           "--out)")

    fence = commands.add_parser("fence", help="fence agent drills")
    fence_actions = fence.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    fence_actions.required = True
    drill = fence_actions.add_parser("test", help="run HOST's fence agent: status (and with "
                                                  "--off a real off and on), timed")
    drill.add_argument("host", metavar="HOST")
    drill.add_argument("--config", default=None, metavar="CLUSTER.yaml", type=INPUT)
    drill.add_argument("--off", action="store_true",
                       help="really power the host off and on again (drain it first)")
    drill.add_argument("--timeout", type=_seconds(1.0, 600.0), default=30.0,
                       help="bound on each agent call (default 30s)")
    drill.add_argument("--state-dir", default=_STATE_DIR, type=OUTPUT_DIR,
                       help="where the drill is recorded (default /var/lib/ringfence)")
    drill.add_argument("--json", action="store_true")

    status = commands.add_parser("status", help="hosts, quorum, VMs and leases of a cluster")
    status.add_argument("--config", default=None, metavar="CLUSTER.yaml", type=INPUT)
    status.add_argument("--json", action="store_true")

    check = commands.add_parser("check", help="validate a cluster or scenario file and find "
                                                "single failures that would hurt")
    check.add_argument("file", metavar="CLUSTER.yaml", type=INPUT)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--state-dir", default=None, metavar="DIR", type=INPUT_ANY,
                       help="where `ringfence fence test` recorded its drills, to remind of "
                            "hosts never drilled (default /var/lib/ringfence, when it exists)")
    _add_journal_commands(commands)
    _add_lab(commands)
    return parser


def _incident_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--journal", nargs="+", action="extend", default=None, type=INPUT_ANY,
                        metavar="DIR|FILE", help="hosts' journal files, or state directories "
                        "holding journal-HOST.jsonl (default: /var/lib/ringfence)")
    parser.add_argument("--scenario", default=None, metavar="SCENARIO.yaml", type=INPUT,
                        help="simulate this scenario and use its journal instead")
    parser.add_argument("--seed", type=_SEED, default=None, help="with --scenario: its seed")
    parser.add_argument("--config", default=None, metavar="CLUSTER.yaml", type=INPUT,
                        help="with --journal: the cluster file (names the cluster and its VMs)")


def _add_journal_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    incident = commands.add_parser("incident", help="incidents built from the journal, and "
                                                     "their post-incident reports")
    actions = incident.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    listing = actions.add_parser("list", help="every incident, oldest first")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one incident: VMs, hosts, events")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true")
    report = actions.add_parser("report", help="the post-incident report of one incident")
    report.add_argument("id", metavar="ID")
    report.add_argument("--format", choices=["md", "html"], default="md")
    report.add_argument("--out", default=None, metavar="FILE", type=OUTPUT_FILE,
                        help="write the report to FILE (a new file) instead of standard output")
    for sub in (listing, show, report):
        _incident_sources(sub)

    journal = commands.add_parser("journal", help="the hosts' journals")
    journal_actions = journal.add_subparsers(dest="action", metavar="ACTION",
                                             parser_class=_Parser)
    journal_actions.required = True
    export = journal_actions.add_parser("export", help="every event, merged across hosts")
    export.add_argument("--since", default=None, metavar="T",
                        help="only events at or after T: an ISO 8601 time (UTC unless it says "
                             "otherwise), seconds since the epoch, or a duration ago (10m, 2h)")
    export.add_argument("--json", action="store_true", help="one JSON object per line")
    export.add_argument("--journal", nargs="+", action="extend", default=None, type=INPUT_ANY,
                        metavar="DIR|FILE", help="journal files or state directories "
                                                 "(default: /var/lib/ringfence)")
    export.add_argument("--store", action="store_true",
                        help="read the journal the hosts mirror into the store (every host's "
                             "events, from any machine that reaches the store)")
    export.add_argument("--config", default=None, metavar="CLUSTER.yaml", type=INPUT,
                        help="with --store: the cluster file (default as for `status`)")
    export.add_argument("--operator", default=None, metavar="NAME",
                        help="only what operator NAME asked for, and its outcomes (the "
                             "events that carry NAME as their operator)")

    why = commands.add_parser("why", help="the chain of evidence behind each move of a VM: "
                                          "detection, fence or lease proof, placement, start, "
                                          "check")
    why.add_argument("vm", metavar="VM")
    why.add_argument("--json", action="store_true")
    _incident_sources(why)

    page = commands.add_parser("status-page", help="write a static public status page "
                                                   "(index.html, status.json)")
    page.add_argument("--out", required=True, metavar="DIR", type=OUTPUT_DIR,
                      help="the directory to write into (created if its parent exists; "
                           "index.html and status.json there are replaced)")
    _incident_sources(page)


def _cmd_fuzz(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence.sim.fuzz import FuzzOptions, fuzz

    options = FuzzOptions(runs=args.runs, seed=args.seed, hosts=args.hosts, vms=args.vms,
                          duration=args.duration, events=args.events, out=Path(args.out))
    report = fuzz(options, progress=None if args.json else print)
    if args.json:
        sys.stdout.write(json.dumps({
            "runs": report.runs, "simulated_s": report.simulated_s,
            "wall_s": round(report.wall_s, 1), "faults": dict(sorted(report.faults.items())),
            "violations": [{"run": i, "text": t, "scenario": str(p) if p else None}
                           for i, t, p in report.violations],
        }, indent=2) + "\n")
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.faults.items()))
        print(f"{report.runs} runs, {report.simulated_s:.0f} simulated seconds in "
              f"{report.wall_s:.1f}s wall; faults drawn: {kinds}")
        print(f"{len(report.violations)} safety violation(s)" if report.violations
              else "no safety violation")
    return EXIT_FAILED if report.violations else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ringfence.demo import FAULTS, DemoOptions, run_demo

    if args.fault not in FAULTS:
        raise ConfigError(f"--fault: expected one of {', '.join(FAULTS)}, got {args.fault!r}")
    if args.vms > 16 * args.hosts:
        raise ConfigError(f"--vms: at most 16 per host ({16 * args.hosts} for {args.hosts} "
                          f"hosts), got {args.vms}")
    targets = ["busiest", "leader", *(f"host{i + 1}" for i in range(args.hosts))]
    if args.fault_target not in targets:
        raise ConfigError(f"--fault-target: expected one of {', '.join(targets)}, got "
                          f"{args.fault_target!r}")
    options = DemoOptions(hosts=args.hosts, vms=args.vms, fault=args.fault,
                          fault_at=args.fault_at, fault_target=args.fault_target,
                          alert_webhooks=list(args.alert_webhook),
                          duration=args.duration, port=args.port,
                          fencing=not args.no_fencing, browser=not args.no_browser,
                          as_json=args.json, vms_kind=args.vms_kind)
    return run_demo(options)


def _cmd_agent(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence.agent.runtime import AgentOptions, run_agent
    from ringfence.config import load_cluster

    config = load_cluster(args.config)
    _require_hypervisor(config, args.host, args.config)
    _check_secrets(config, args)
    options = AgentOptions(
        state_dir=Path(args.state_dir), watchdog=args.watchdog,
        unsafe_no_watchdog=args.unsafe_no_watchdog, log_json=args.log_json,
        disk_file=Path(args.disk_file) if args.disk_file else None,
        vm_dir=Path(args.vm_dir) if args.vm_dir else None,
        migration_delay=args.migration_delay, vm_launcher=args.vm_launcher,
        migration_bandwidth=args.migration_bandwidth,
        unsafe_migration=args.libvirt_unsafe_migration,
        bootstrap=args.bootstrap, forget_store=args.forget_store)
    return run_agent(config, args.host, options)


def _check_secrets(config: ClusterConfig, args: argparse.Namespace) -> None:
    """Secrets readable by others: refused (exit 2), or with --allow-insecure-secrets a
    critical alert in the host's journal, before anything else starts."""
    from pathlib import Path

    from ringfence import secrets
    from ringfence.config import read_yaml

    secrets.allow_insecure(args.allow_insecure_secrets)
    _data, lines = read_yaml(args.config)
    warnings = secrets.check_secrets(config, file=args.config, lines=lines)
    if not warnings or args.host not in [h.name for h in config.hosts]:
        return
    from ringfence.agent.journal import FileJournal, JournalAlerts, journal_file

    state_dir = Path(args.state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    journal = FileJournal(journal_file(state_dir, args.host), args.host,
                          echo_json=args.log_json)
    journal.cluster = config.name
    for warning in warnings:
        JournalAlerts(journal).send(
            "critical", f"INSECURE SECRET (--allow-insecure-secrets): {warning}",
            host=args.host)


def _require_hypervisor(config: ClusterConfig, host: str, file: str) -> None:
    """A libvirt URI needs libvirt-python: say so before anything starts (exit 2)."""
    from ringfence.errors import libvirt_missing

    for index, spec in enumerate(config.hosts):
        if spec.name != host or spec.hypervisor in (None, "process"):
            continue
        try:
            import libvirt  # noqa: F401
        except ImportError:
            raise ConfigError(libvirt_missing(spec.hypervisor, sys.executable), file=file,
                              path=f"hosts[{index}].hypervisor") from None


def _cmd_vm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence import operator

    wait = 0.0 if args.no_wait else args.wait
    if args.action in ("start", "stop"):
        return operator.set_stopped(args.config, args.vm, args.action == "stop", args.operator,
                                    wait=wait)
    if args.action == "reset":
        return operator.reset(args.config, args.vm, args.operator, wait=wait)
    if args.action == "migrate":
        return operator.migrate(args.config, args.vm, args.to, args.operator, wait=wait)
    return operator.force_start(args.config, args.vm, args.host, list(args.confirm_down),
                                args.operator, Path(args.state_dir or _STATE_DIR), wait=wait)


def _cmd_host(args: argparse.Namespace) -> int:
    from ringfence import operator

    return operator.maintenance(args.config, args.name, args.state == "on", args.operator,
                                wait=0.0 if args.no_wait else args.wait)


def _cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence.init_cluster import run_init

    for line in run_init(name=args.name, hosts_arg=args.hosts, ring1_arg=args.ring1,
                         store=args.store, out=Path(args.out),
                         key=Path(args.key) if args.key else None):
        print(line)
    return EXIT_OK


def _cmd_fence(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from ringfence.config import load_cluster
    from ringfence.fence.drill import run_drill
    from ringfence.status import find_config

    config = load_cluster(find_config(args.config))
    steps = run_drill(config, args.host, off=args.off, timeout=args.timeout,
                      state_dir=Path(args.state_dir))
    ok = all(step.ok for step in steps)
    if args.json:
        print(json.dumps({"host": args.host, "ok": ok, "steps": [asdict(s) for s in steps]},
                         indent=2))
    else:
        for step in steps:
            print(f"{step.action:<7} {'ok' if step.ok else 'FAILED':<7} {step.seconds:6.2f}s  "
                  f"{step.detail}")
        print(f"fencing of {args.host}: {'works' if ok else 'FAILED'}")
    return EXIT_OK if ok else EXIT_FAILED


def _cmd_status(args: argparse.Namespace) -> int:
    from ringfence.status import run_status

    return run_status(args.config, as_json=args.json)


def _cmd_check(args: argparse.Namespace) -> int:
    from ringfence.check import run_check

    return run_check(args.file, as_json=args.json, state_dir=args.state_dir or _STATE_DIR)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ringfence.sim.runner import simulate, to_json
    from ringfence.sim.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    result = simulate(scenario, args.seed)
    if args.json:
        sys.stdout.write(json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n")
    else:
        from ringfence.sim.render import render_result

        render_result(result, timeline=args.timeline)
    if args.report:
        from pathlib import Path

        from ringfence.journal.report import incidents_of_simulation, write_reports

        incidents, context = incidents_of_simulation(result)
        written = write_reports(incidents, context, Path(args.report))
        if not args.json:
            print(f"incident reports ({len(incidents)} incident(s)): "
                  f"{Path(args.report) / 'index.html'}")
            for path in written:
                if path.suffix == ".md" and path.name != "index.md":
                    print(f"  {path}")
    return EXIT_OK if result.passed else EXIT_FAILED


def _journal_source(args: argparse.Namespace) -> IncidentSource:
    import time

    from ringfence.journal.report import load_source

    scenario = getattr(args, "scenario", None)
    return load_source(journal=args.journal, scenario=scenario,
                       seed=getattr(args, "seed", None), config=getattr(args, "config", None),
                       now=None if scenario else time.time())


def _cmd_incident(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence.journal.incidents import incident_to_dict
    from ringfence.journal.report import (
        find_incident,
        fmt_duration,
        fmt_time,
        render_html,
        render_markdown,
    )

    source = _journal_source(args)
    ctx = source.context
    if args.action == "list":
        if args.json:
            sys.stdout.write(json.dumps([incident_to_dict(i, with_events=False)
                                         for i in source.incidents], indent=2,
                                        ensure_ascii=False) + "\n")
            return EXIT_OK
        if not source.incidents:
            print("no incident")
        for i in source.incidents:
            print(f"{i.id}  {i.severity:<8}  {i.status:<30}  {fmt_time(i.opened_at, ctx)}  "
                  f"{i.title}")
        return EXIT_OK
    incident = find_incident(source.incidents, args.id)
    if args.action == "show":
        if args.json:
            sys.stdout.write(json.dumps(incident_to_dict(incident), indent=2,
                                        ensure_ascii=False) + "\n")
            return EXIT_OK
        print(f"{incident.id}: {incident.title}")
        print(f"severity {incident.severity}; {incident.status}; opened "
              f"{fmt_time(incident.opened_at, ctx)}"
              + (f"; resolved {fmt_time(incident.resolved_at, ctx)}"
                 if incident.resolved_at is not None else ""))
        print(f"hosts: {', '.join(incident.hosts) or '-'}")
        for v in incident.vms:
            print(f"  {v.vm}: {v.from_host} -> {v.to_host or '-'}, down "
                  f"{fmt_duration(v.downtime_s)}, fence path {v.fence_path or '-'}, "
                  f"check {v.verification}")
        for e in incident.events:
            about = "/".join(x for x in (e.host, e.vm) if x)
            print(f"  {fmt_time(e.t, ctx, date=False):>14}  {e.kind:<20} {about:<18} {e.text}")
        return EXIT_OK
    text = (render_html if args.format == "html" else render_markdown)(incident, ctx)
    if args.out:
        from ringfence.paths import write_new_file

        write_new_file(Path(args.out), text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _parse_since(value: str) -> float:
    import time
    from datetime import UTC, datetime

    from ringfence.units import parse_duration

    try:
        return float(value)
    except ValueError:
        pass
    try:
        return time.time() - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"expected an ISO 8601 time (2026-05-01T12:00:00Z), seconds since "
                          f"the epoch, or a duration ago (10m), got {value!r}",
                          path="--since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _cmd_journal(args: argparse.Namespace) -> int:
    from ringfence.journal.events import from_journal_files
    from ringfence.journal.report import default_journal

    since = _parse_since(args.since) if args.since else None
    if args.store:
        return _export_from_store(args, since)
    source = from_journal_files(args.journal or [str(default_journal()[0])])
    _print_events(source.events, since, args.operator, as_json=args.json)
    if source.skipped:
        sys.stderr.write(f"ringfence journal: {source.skipped} torn line(s) skipped\n")
    return EXIT_OK


def _export_from_store(args: argparse.Namespace, since: float | None) -> int:
    from ringfence.config import load_cluster
    from ringfence.journal.events import from_entries
    from ringfence.journal.store_mirror import read_store_journal
    from ringfence.status import find_config
    from ringfence.store.base import StoreUnavailable
    from ringfence.store.factory import open_cluster_store

    config = load_cluster(find_config(args.config))
    try:
        entries = read_store_journal(open_cluster_store(config))
    except StoreUnavailable as exc:
        sys.stderr.write(f"ringfence journal: the store does not answer ({exc}); read the "
                         f"hosts' local files with --journal instead\n")
        return EXIT_FAILED
    _print_events(from_entries(entries, source="store"), since, args.operator,
                  as_json=args.json)
    return EXIT_OK


def _print_events(events: Sequence[Event], since: float | None, operator: str | None, *,
                  as_json: bool) -> None:
    from ringfence.journal.events import event_to_dict
    from ringfence.journal.report import ReportContext, fmt_time

    context = ReportContext()
    for event in events:
        if since is not None and event.t < since:
            continue
        if operator is not None and event.fact.operator != operator:
            continue
        if as_json:
            sys.stdout.write(json.dumps(event_to_dict(event), ensure_ascii=False) + "\n")
        else:
            about = "/".join(x for x in (event.host, event.vm) if x) or "-"
            sys.stdout.write(f"{fmt_time(event.t, context)}  {event.by or '-':<10} "
                             f"{event.kind:<20} {about:<18} {event.text}\n")


def _cmd_why(args: argparse.Namespace) -> int:
    from ringfence.journal.report import fmt_time
    from ringfence.journal.why import explain_vm, history_to_dict, render_history

    source = _journal_source(args)
    known = {e.vm for e in source.events if e.vm}
    if args.vm not in known:
        names = ", ".join(sorted(known)) or "none"
        raise ConfigError(f"no event about VM {args.vm!r} in this journal; the VMs it names: "
                          f"{names}", path="VM")
    history = explain_vm(source.events, args.vm)
    if args.json:
        sys.stdout.write(json.dumps(history_to_dict(history), indent=2, ensure_ascii=False)
                         + "\n")
    else:
        sys.stdout.write(render_history(history, lambda t: fmt_time(t, source.context)))
    return EXIT_OK


def _cmd_status_page(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence.journal.status_page import write_status_page

    source = _journal_source(args)
    written = write_status_page(Path(args.out), cluster=source.context.cluster,
                                hosts_state=source.hosts_state, incidents=source.incidents,
                                now=source.now, simulated=source.context.simulated)
    for path in written:
        print(path)
    return EXIT_OK


# ---------------------------------------------------------------------- ringfence lab
def _add_lab(commands: argparse._SubParsersAction[_Parser]) -> None:
    from ringfence.lab.cli import add_lab_commands

    add_lab_commands(commands)


def _cmd_lab(args: argparse.Namespace) -> int:
    from ringfence.lab.cli import run_lab_command

    return run_lab_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already explained)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handlers = {"simulate": _cmd_simulate, "check": _cmd_check, "fuzz": _cmd_fuzz,
                "agent": _cmd_agent, "status": _cmd_status, "demo": _cmd_demo,
                "vm": _cmd_vm, "host": _cmd_host, "incident": _cmd_incident,
                "journal": _cmd_journal, "status-page": _cmd_status_page, "lab": _cmd_lab,
                "why": _cmd_why, "init": _cmd_init, "fence": _cmd_fence}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(f"ringfence {args.command}: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`ringfence ... | head`): not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stdout must stay open)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
