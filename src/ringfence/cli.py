"""The `ringfence` command line (see contracts/cli.md for the public interface).

Exit codes everywhere: 0 success, 1 the operation ran and reports a failure, 2 bad input. Bad
input never shows a traceback: a `ConfigError` names the file, line and field path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ringfence import __version__
from ringfence.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


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
    sim.add_argument("scenario", metavar="SCENARIO.yaml")
    sim.add_argument("--seed", type=int, default=None, help="override the file's seed")
    sim.add_argument("--json", action="store_true", help="print the result as JSON")
    sim.add_argument("--timeline", action="store_true", help="print every journaled event")
    fuzz = commands.add_parser("fuzz", help="random clusters and fault schedules against the "
                                             "safety checker")
    fuzz.add_argument("--runs", type=int, default=100)
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--hosts", type=int, default=None, help="hosts per cluster (default 2-16)")
    fuzz.add_argument("--vms", type=int, default=None, help="VMs per cluster (default random)")
    fuzz.add_argument("--duration", default="180s", help="simulated length of each run")
    fuzz.add_argument("--events", type=int, default=12, help="faults per run, on average")
    fuzz.add_argument("--out", default="fuzz-out", help="where a reproducing scenario goes")
    fuzz.add_argument("--json", action="store_true")

    demo = commands.add_parser("demo", help="a real cluster on this machine, a fault, a failover")
    demo.add_argument("--hosts", type=int, default=3)
    demo.add_argument("--vms", type=int, default=6)
    demo.add_argument("--fault", default="power_off",
                      help="power_off (default: the busiest host's agent, VMs and watchdog "
                           "die), hang (all of them freeze, the watchdog too), agent_hang (only "
                           "the agent freezes), vm_crash or none")
    demo.add_argument("--fault-at", default="20s",
                      help="when, counted from the demo's start (and not before every VM runs)")
    demo.add_argument("--duration", default=None, help="stop after this long (e.g. 60s)")
    demo.add_argument("--port", type=int, default=8080, help="dashboard port (0: none)")
    demo.add_argument("--no-browser", action="store_true")
    demo.add_argument("--no-fencing", action="store_true",
                      help="no power fence agents: recovery takes the watchdog path")
    demo.add_argument("--json", action="store_true", help="print a JSON summary at the end")

    agent = commands.add_parser("agent", help="run the host agent of one host")
    agent.add_argument("--config", required=True, metavar="CLUSTER.yaml")
    agent.add_argument("--host", required=True, metavar="NAME")
    agent.add_argument("--state-dir", default="/var/lib/ringfence",
                       help="journal, local state and process VMs (default /var/lib/ringfence)")
    agent.add_argument("--watchdog", choices=["auto", "linux", "process"], default="auto",
                       help="auto: /dev/watchdog; process: a supervisor process (demo, tests)")
    agent.add_argument("--unsafe-no-watchdog", action="store_true",
                       help="run without any watchdog (a hung host can not be reset)")
    agent.add_argument("--disk-file", default=None,
                       help="the process hypervisor's shared disk file (demo, tests)")
    agent.add_argument("--log-json", action="store_true", help="journal lines as JSON on stderr")

    vm = commands.add_parser("vm", help="operator actions on a VM (through the store)")
    vm_actions = vm.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    vm_actions.required = True
    for action, text in (("start", "let a stopped VM run again"),
                         ("stop", "stop a VM and keep it stopped")):
        sub = vm_actions.add_parser(action, help=text)
        sub.add_argument("vm")
        sub.add_argument("--config", default=None)
        sub.add_argument("--operator", default=None, help="your name, for the journal")
    move = vm_actions.add_parser("migrate", help="live-migrate a VM to another host")
    move.add_argument("vm")
    move.add_argument("--to", required=True, metavar="HOST")
    move.add_argument("--config", default=None)
    move.add_argument("--operator", default=None)
    force = vm_actions.add_parser("force-start", help="override: run a VM on a host "
                                                      "(safety rules still apply)")
    force.add_argument("vm")
    force.add_argument("--host", required=True)
    force.add_argument("--confirm-down", nargs="*", default=[], metavar="HOST",
                       help="without quorum: every other host that could run the VM")
    force.add_argument("--operator", default=None)
    force.add_argument("--config", default=None)
    force.add_argument("--state-dir", default="/var/lib/ringfence",
                       help="the local agent's state directory (used without quorum)")

    host = commands.add_parser("host", help="operator actions on a host")
    host_actions = host.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    host_actions.required = True
    maint = host_actions.add_parser("maintenance", help="drain a host / return it")
    maint.add_argument("name")
    maint.add_argument("state", choices=["on", "off"])
    maint.add_argument("--config", default=None)
    maint.add_argument("--operator", default=None)

    status = commands.add_parser("status", help="hosts, quorum, VMs and leases of a cluster")
    status.add_argument("--config", default=None, metavar="CLUSTER.yaml")
    status.add_argument("--json", action="store_true")

    check = commands.add_parser("check", help="validate a cluster or scenario file and find "
                                                "single failures that would hurt")
    check.add_argument("file", metavar="CLUSTER.yaml")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _cmd_fuzz(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence.sim.fuzz import FuzzOptions, fuzz
    from ringfence.units import parse_duration

    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        raise ConfigError(f"--duration: {exc}") from None
    for name in ("runs", "hosts", "vms", "events"):
        value = getattr(args, name)
        if value is not None and value < (2 if name == "hosts" else 1):
            raise ConfigError(f"--{name}: expected a whole number of at least "
                              f"{2 if name == 'hosts' else 1}, got {value}")
    options = FuzzOptions(runs=args.runs, seed=args.seed, hosts=args.hosts, vms=args.vms,
                          duration=duration, events=args.events, out=Path(args.out))
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
    from ringfence.units import parse_duration

    def duration(option: str, value: str | None) -> float | None:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"--{option}: {exc}") from None

    if args.fault not in FAULTS:
        raise ConfigError(f"--fault: expected one of {', '.join(FAULTS)}, got {args.fault!r}")
    if args.hosts < 2 or args.hosts > 9:
        raise ConfigError(f"--hosts: expected 2 to 9 hosts, got {args.hosts}")
    if args.vms < 1:
        raise ConfigError(f"--vms: expected at least 1, got {args.vms}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: expected 0 to 65535, got {args.port}")
    options = DemoOptions(hosts=args.hosts, vms=args.vms, fault=args.fault,
                          fault_at=duration("fault-at", args.fault_at) or 0.0,
                          duration=duration("duration", args.duration), port=args.port,
                          fencing=not args.no_fencing, browser=not args.no_browser,
                          as_json=args.json)
    return run_demo(options)


def _cmd_agent(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence.agent.runtime import AgentOptions, run_agent
    from ringfence.config import load_cluster

    config = load_cluster(args.config)
    options = AgentOptions(
        state_dir=Path(args.state_dir), watchdog=args.watchdog,
        unsafe_no_watchdog=args.unsafe_no_watchdog, log_json=args.log_json,
        disk_file=Path(args.disk_file) if args.disk_file else None)
    return run_agent(config, args.host, options)


def _cmd_vm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ringfence import operator

    if args.action in ("start", "stop"):
        return operator.set_stopped(args.config, args.vm, args.action == "stop", args.operator)
    if args.action == "migrate":
        return operator.migrate(args.config, args.vm, args.to, args.operator)
    return operator.force_start(args.config, args.vm, args.host, list(args.confirm_down),
                                args.operator, Path(args.state_dir))


def _cmd_host(args: argparse.Namespace) -> int:
    from ringfence import operator

    return operator.maintenance(args.config, args.name, args.state == "on", args.operator)


def _cmd_status(args: argparse.Namespace) -> int:
    from ringfence.status import run_status

    return run_status(args.config, as_json=args.json)


def _cmd_check(args: argparse.Namespace) -> int:
    from ringfence.check import run_check

    return run_check(args.file, as_json=args.json)


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
    return EXIT_OK if result.passed else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    handlers = {"simulate": _cmd_simulate, "check": _cmd_check, "fuzz": _cmd_fuzz,
                "agent": _cmd_agent, "status": _cmd_status, "demo": _cmd_demo,
                "vm": _cmd_vm, "host": _cmd_host}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(f"ringfence {args.command}: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
