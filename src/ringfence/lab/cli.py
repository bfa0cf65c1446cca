"""`ringfence lab run` (and `lab run-all`): the command-line glue of the lab.

`add_lab_commands` registers the subcommands on the main parser; `run_lab_command` runs them.
Exit codes as for `ringfence simulate`: 0 every expectation held and no split brain, 1 an
expectation failed, a split brain happened or the lab itself failed during the run, 2 the file
is invalid, names a fault the lab can not do, or the machine can not host a lab (not root, a
tool missing). 130 after Ctrl-C or SIGTERM (everything was torn down).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ringfence.errors import ConfigError
from ringfence.paths import PathArg

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_lab_commands(commands: Any) -> None:
    """Register ``lab run`` and ``lab run-all`` on the main parser's subcommands."""
    lab = commands.add_parser("lab", help="replay scenario files on real clusters in network "
                                          "namespaces (root)")
    actions = lab.add_subparsers(dest="action", metavar="ACTION",
                                 parser_class=commands._parser_class)
    actions.required = True
    run = actions.add_parser("run", help="replay one scenario file for real and judge it")
    run.add_argument("scenario", metavar="SCENARIO.yaml", type=PathArg("input"))
    run.add_argument("--json", action="store_true", help="print the result as JSON (the "
                                                          "document of ringfence simulate)")
    run.add_argument("--tolerance", default="1s",
                     help="how far an expectation's time points may be off (default 1s)")
    run.add_argument("--keep", action="store_true",
                     help="keep the lab's directory (journals, logs, disk, etcd data)")
    every = actions.add_parser("run-all", help="every scenario of a directory, simulated and "
                                               "replayed for real, in one table")
    every.add_argument("directory", nargs="?", default="scenarios", metavar="DIR",
                       type=PathArg("input_any"))
    every.add_argument("--out", default=None, metavar="DIR", type=PathArg("output_dir"),
                       help="keep every JSON document and the table (table.md) here")
    every.add_argument("--tolerance", default="1s")
    every.add_argument("--json", action="store_true", help="print the table as JSON")


def _tolerance(text: str) -> float:
    from ringfence.units import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--tolerance: {exc}") from None
    if not 0 <= value <= 60:
        raise ConfigError(f"--tolerance: expected 0s to 60s, got {text}")
    return value


def run_lab_command(args: argparse.Namespace) -> int:
    if args.action == "run":
        return _run(args)
    if args.action == "run-all":
        return _run_all(args)
    raise ConfigError(f"unknown lab action {args.action!r}")


def _run(args: argparse.Namespace) -> int:
    from ringfence.lab.judge import lab_json
    from ringfence.lab.netns import LabError
    from ringfence.lab.runner import LabOptions, LabRefused, LabRun
    from ringfence.sim.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    tolerance = _tolerance(args.tolerance)

    def progress(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    lab = LabRun(scenario, LabOptions(tolerance=tolerance, keep=args.keep, progress=progress))
    try:
        result = lab.run()
    except LabRefused as exc:
        for reason in exc.reasons:
            sys.stderr.write(f"ringfence lab: {args.scenario}: {reason}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("ringfence lab: interrupted; everything the lab started was torn "
                         "down\n")
        return EXIT_INTERRUPTED
    except LabError as exc:
        sys.stderr.write(f"ringfence lab: {args.scenario}: the lab failed: {exc}\n")
        return EXIT_FAILED
    document = lab_json(result)
    if args.json:
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        render(document)
    return EXIT_OK if document["passed"] else EXIT_FAILED


def _run_all(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from ringfence.lab.run_all import markdown, run_all
    from ringfence.lab.runner import LabOptions, check_machine

    directory = Path(args.directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory")
    problems = check_machine()
    if problems:
        for problem in problems:
            sys.stderr.write(f"ringfence lab: {problem}\n")
        return EXIT_BAD_INPUT
    options = LabOptions(tolerance=_tolerance(args.tolerance),
                         progress=lambda text: print(text, file=sys.stderr, flush=True))
    try:
        rows = run_all(directory, options, out=Path(args.out) if args.out else None,
                       say=lambda text: print(text, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        sys.stderr.write("ringfence lab: interrupted; everything the lab started was torn "
                         "down\n")
        return EXIT_INTERRUPTED
    if args.json:
        sys.stdout.write(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    else:
        sys.stdout.write(markdown(rows))
    bad = [r for r in rows if r.lab in ("FAILED", "error")]
    return EXIT_FAILED if bad else EXIT_OK


def render(document: dict[str, Any]) -> None:
    """The readable verdict: runs, then each expectation with its tolerance."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console(highlight=False)
    runs = Table(title="Where each VM ran (the VMs' own disk writes)")
    for column in ("vm", "host", "from", "to"):
        runs.add_column(column)
    for run in document["runs"]:
        runs.add_row(run["vm"], run["host"], f"{run['from']:.1f}", f"{run['to']:.1f}")
    out.print(runs)
    verdict = Table(title="Verdict (real time)")
    for column in ("check", "result", "tolerance", "detail"):
        verdict.add_column(column)
    if document["violations"]:
        for violation in document["violations"]:
            verdict.add_row("safety", "[bold red]VIOLATION[/]", "", escape(violation["text"]))
    else:
        verdict.add_row("safety: never two hosts running one VM", "[green]held[/]", "", "")
    for item in document["expectations"]:
        written = ", ".join(f"{k}: {v}" for k, v in item["expect"].items())
        verdict.add_row(escape(written), "[green]passed[/]" if item["passed"] else
                        "[red]FAILED[/]", "-" if item["tolerance_s"] is None else
                        f"±{item['tolerance_s']:g}s", escape(item["detail"]))
    for error in document["lab"]["errors"]:
        verdict.add_row("lab", "[red]ERROR[/]", "", escape(error))
    out.print(verdict)
    out.print("[bold green]PASSED[/]" if document["passed"] else "[bold red]FAILED[/]")

