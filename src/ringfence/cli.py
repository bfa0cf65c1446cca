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
    check = commands.add_parser("check", help="validate a cluster or scenario file and find "
                                                "single failures that would hurt")
    check.add_argument("file", metavar="CLUSTER.yaml")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


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
    handlers = {"simulate": _cmd_simulate, "check": _cmd_check}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(f"ringfence {args.command}: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
