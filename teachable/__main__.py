"""Command line: `python -m teachable run PARAMS [--phases ...] [--force]`.

Each subcommand is a pair of functions: one adds its arguments, one carries it out and returns
the exit code: 0 done, 1 a phase failed, 2 bad input (parameters, phase names, notebooks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dotenv import find_dotenv, load_dotenv

from teachable.parameters import load_parameters
from teachable.runner import NOTEBOOKS_DIR, PHASES, PhaseFailed, run_phases, select_phases


def run(args: argparse.Namespace) -> int:
    """Execute the phase notebooks in order and keep them as reports."""
    try:
        parameters = load_parameters(args.params)
        phases = select_phases(args.phases, args.notebooks_dir)
    except ValueError as error:  # a ParameterError, an unknown phase or a missing notebook
        print(error, file=sys.stderr)
        return 2
    print(f"run {parameters.run_name}: {parameters.run_dir}")
    try:
        provenance = run_phases(parameters, phases, args.notebooks_dir, force=args.force)
    except PhaseFailed as error:
        print(error, file=sys.stderr)
        return 1
    ran = sum(record.status == "ran" for record in provenance.phases)
    print(f"done: {ran} phase(s) ran, {len(phases) - ran} up to date")
    print(f"reports: {parameters.run_dir / 'reports'}")
    return 0


def add_run_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="execute the phase notebooks with papermill")
    parser.add_argument("params", type=Path, help="parameter file, e.g. parameters/pilot.yaml")
    parser.add_argument(
        "--phases",
        nargs="+",
        metavar="PHASE",
        help=f"phases to run, in pipeline order (default: all: {' '.join(p.name for p in PHASES)})",
    )
    parser.add_argument("--force", action="store_true", help="rerun up-to-date phases too")
    parser.add_argument(
        "--notebooks-dir", type=Path, default=NOTEBOOKS_DIR, help="folder of the phase notebooks"
    )
    parser.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teachable", description="Find, label and train on teachable moments in BabyAI."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m teachable` and of the `teachable` script."""
    load_dotenv(find_dotenv(usecwd=True))
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
