"""Command line: `python -m teachable run PARAMS [--phases ...] [--force] [--set ...]
[--dry-run]`, the stepwise Phase 1 labeling: `python -m teachable label STEP --params PARAMS
--input FILE [--output-dir DIR]`, the artifacts and verdicts of a run: `python -m teachable
check RUN_DIR [--science]`, what a run would do now: `python -m teachable status RUN`, two runs
side by side: `python -m teachable compare RUN_A RUN_B [--chart PATH]`, the parameter
reference: `python -m teachable params [PARAMS_FILE]`, and `python -m teachable --version`.

Each subcommand is a pair of functions: one adds its arguments, one carries it out and returns
the exit code: 0 done, 1 a phase failed, a gate stopped the run, the teacher's answers were too
often invalid, an artifact is missing or (with `--science`) a primary verdict fails, 2 the work
cannot start (bad parameters, phase names or notebooks, a missing key, a folder that is not a
model, an input file that does not parse, a row that lacks a field the step needs, a run folder
another process is working in, or a folder that is not a run folder).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from dotenv import find_dotenv, load_dotenv
from tabulate import tabulate

from teachable.measure.multiplicity import primary_family
from teachable.parameters import (
    Parameters,
    load_parameters,
    parameter_table,
    section_descriptions,
    with_overrides,
)
from teachable.pipeline.checks import check_run, describe, describe_verdicts, run_verdicts
from teachable.pipeline.lock import FolderBusy, hold_lock
from teachable.pipeline.runner import (
    NOTEBOOKS_DIR,
    PHASES,
    PhaseFailed,
    check_prerequisites,
    check_readable_inputs,
    run_phases,
    select_phases,
)
from teachable.pipeline.status import describe_status, last_run, phase_statuses, run_parameters
from teachable.records.layout import Phase1Layout, RunLayout
from teachable.records.store import read_json


def run(args: argparse.Namespace) -> int:
    """Execute the phase notebooks in order and keep them as reports; with `--dry-run`, say
    what that would do and create nothing."""
    try:
        sections = [phase.section for phase in PHASES]
        parameters = with_overrides(load_parameters(args.params), args.set or [], sections)
        phases = select_phases(args.phases, args.notebooks_dir)
        if not args.dry_run:
            check_prerequisites(parameters)
        check_readable_inputs(parameters, phases)
    except ValueError as error:  # bad parameters, phase or notebook; a missing key or folder
        print(error, file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"dry run of {args.params}: run {parameters.run_name}: {parameters.run_dir}")
        print("nothing is run, created or changed\n")
        statuses = phase_statuses(parameters, phases, args.notebooks_dir, force=args.force)
        print(describe_status(parameters, statuses))
        return 0
    print(f"run {parameters.run_name}: {parameters.run_dir}")
    command = shlex.join(["python", "-m", "teachable", *args.argv])
    try:
        provenance = run_phases(
            parameters, phases, args.notebooks_dir, force=args.force, command=command
        )
    except FolderBusy as error:
        print(error, file=sys.stderr)
        return 2
    except PhaseFailed as error:
        print(error, file=sys.stderr)
        print_teacher_health(read_json(parameters.layout.provenance)["phases"])
        return 1
    ran = sum(record.status == "ran" for record in provenance.phases)
    print(f"done: {ran} phase(s) ran, {len(phases) - ran} up to date")
    print_teacher_health([asdict(record) for record in provenance.phases])
    print(f"reports: {parameters.layout.reports_index}")
    return 0


def print_teacher_health(records: list[dict]) -> None:
    """The share of invalid or failed teacher answers of each phase that ran and asked one."""
    for record in records:
        for line in record.get("teacher", []):
            print(f"teacher: {line}")


PLAN_FLAGS = {
    "--batch-size": "phase2.batch_size",
    "--gradient-accumulation-steps": "phase2.gradient_accumulation_steps",
}


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
        "--dry-run",
        action="store_true",
        help="say what the run would do (each phase up to date or stale and why, its units, "
        "the time and teacher cost expected) and create nothing",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="change a parameter of a phase's section for this run, validated like the file; "
        "repeatable. E.g. the plan's out-of-memory remedies: --set phase2.batch_size=8, "
        "--set phase2.gradient_accumulation_steps=4",
    )
    for flag, key in PLAN_FLAGS.items():
        parser.add_argument(
            flag,
            action="append",
            dest="set",
            type=lambda value, key=key: f"{key}={value}",
            metavar="N",
            help=f"the plan's troubleshooting flag: same as --set {key}=N",
        )
    parser.add_argument(
        "--notebooks-dir", type=Path, default=NOTEBOOKS_DIR, help="folder of the phase notebooks"
    )
    parser.set_defaults(handler=run)


LABEL_STEPS = ("all", "hints", "uncertainty", "leverage", "cpt", "quadrants", "plots")


def label(args: argparse.Namespace) -> int:
    """One step of Phase 1 labeling over a snapshots file, resumable. Every input is checked
    (the parameters, each row, the fields the step needs, the prepared student, the teacher's
    key) before anything is written; then the run folder (or `--output-dir`) is locked for the
    work. The labeling modules load torch, so they are imported here rather than slowing every
    command down."""
    from teachable.models.teachers import TeacherOutage
    from teachable.world.replay import load_replayed_rows

    try:
        parameters = load_parameters(args.params)
        rows = load_replayed_rows(args.input)
        chosen = _chosen_thresholds(args)
        out = Phase1Layout(args.output_dir) if args.output_dir else parameters.layout.phase1
        needs = _label_inputs(args.step, parameters, rows, out, args.input)
    except (ValueError, FileNotFoundError, RuntimeError) as error:  # bad input, before any work
        print(error, file=sys.stderr)
        return 2
    lock = out.lock if args.output_dir else parameters.layout.lock
    try:
        with hold_lock(lock):
            print(_label_step(args.step, parameters, rows, out, chosen, **needs))
    except FolderBusy as error:
        print(error, file=sys.stderr)
        return 2
    except TeacherOutage as error:
        print(error, file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as error:
        print(error, file=sys.stderr)
        return 2
    return 0


def _label_inputs(step: str, parameters: Parameters, rows: list, out: Phase1Layout, source) -> dict:
    """What the step needs, each checked before any work: rows with the fields it reads, the
    student Phase 0 prepared, and the teacher (its key)."""
    from teachable.models.label_steps import STEPS, require_fields
    from teachable.models.teachers import make_teacher
    from teachable.phases.phase0_warmup import prepared_student
    from teachable.phases.phase1_labels import check_step_inputs

    phase1, needs = parameters.phase1, {}
    if step in ("all", *STEPS):
        needs["student_params"] = prepared_student(parameters.layout.phase0)
    if step in ("all", "hints"):
        needs["teacher"] = make_teacher(parameters)
    if step in STEPS:
        teacher_params = parameters.teacher
        seed = parameters.run.seed
        check_step_inputs(
            step, rows, phase1, seed, needs["student_params"], teacher_params, out, source
        )
    elif step in ("quadrants", "plots"):
        require_fields(rows, step, phase1, source)
    return needs


def _chosen_thresholds(args: argparse.Namespace) -> tuple[float, float] | None:
    given = (args.U_threshold, args.L_threshold)
    if given == (None, None):
        return None
    if None in given:
        raise ValueError("give both --U-threshold and --L-threshold, or neither")
    return given


def _label_step(
    step: str,
    parameters: Parameters,
    rows: list,
    out: Phase1Layout,
    chosen: tuple | None,
    student_params=None,
    teacher=None,
) -> str:
    """Carry out one `label` step and say what it did."""
    from teachable.models.label_steps import STEPS
    from teachable.models.quadrant_placement import place_in_quadrants, thresholds_from_parameters
    from teachable.phases.phase1_labels import label_snapshots, label_step
    from teachable.pipeline.execution import start_workers
    from teachable.records.labeled import load_teacher_health
    from teachable.records.quadrants import Thresholds, load_thresholds
    from teachable.reports.phase1 import write_plots

    if step == "all":
        report = label_snapshots(
            snapshots=rows,
            phase1=parameters.phase1,
            seed=parameters.run.seed,
            workers=start_workers(parameters.execution, student_params),
            teacher=teacher,
            out=out,
        )
        write_plots(report.rows, report.thresholds, out)
        lines = [
            f"{len(report.rows)} snapshots labeled ({report.newly_labeled} new) in {out.folder}"
        ]
        lines += [f"{quadrant}: {count}" for quadrant, count in report.counts.items()]
        lines += [f"note: {note}" for note in report.notes]
        return "\n".join([*lines, report.teacher_health.line()])
    if step in STEPS:
        label_step(
            step,
            rows,
            parameters.phase1,
            parameters.run.seed,
            student_params,
            parameters.teacher,
            out,
            teacher=teacher,
        )
        done = f"{step}: {len(rows)} snapshots labeled in {out.labeled_jsonl}"
        if step == "hints":
            done += "\n" + load_teacher_health(out.teacher_health).line()
        return done
    thresholds = chosen and Thresholds(U=chosen[0], L=chosen[1], source="command line")
    if step == "quadrants":
        assignment = place_in_quadrants(rows, out, parameters.phase1, thresholds)
        used = assignment.thresholds
        lines = [f"thresholds U={used.U} L={used.L} ({used.source})"]
        lines += [f"{quadrant}: {count}" for quadrant, count in assignment.counts.items()]
        return "\n".join(lines + [f"warning: {w}" for w in assignment.warnings])
    if thresholds is None:
        try:
            thresholds = load_thresholds(out)
        except FileNotFoundError:
            thresholds = thresholds_from_parameters(rows, parameters.phase1)
    return "\n".join(str(path) for path in write_plots(rows, thresholds, out))


def add_label_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "label", help="Phase 1 labeling, step by step, over a snapshots file (resumable)"
    )
    parser.add_argument(
        "step",
        choices=LABEL_STEPS,
        help="all: every label, quadrants and plots; hints: teacher answers; uncertainty: U; "
        "leverage; cpt: the contextual patch test; quadrants: assign with thresholds; "
        "plots: threshold plots",
    )
    parser.add_argument("--params", type=Path, required=True, help="parameter file")
    parser.add_argument(
        "--input", type=Path, required=True, help="snapshots (JSON list) or labeled rows (JSONL)"
    )
    parser.add_argument(
        "--output-dir", type=Path, help="where labels go (default: the run's phase1 folder)"
    )
    for axis in ("U", "L"):
        parser.add_argument(
            f"--{axis}-threshold",
            dest=f"{axis}_threshold",
            type=float,
            help=f"{axis} threshold for quadrants and plots (default: from the parameters)",
        )
    parser.set_defaults(handler=label)


def check(args: argparse.Namespace) -> int:
    """Print the artifact checks of a run folder, one line each, then every verdict of its
    `verdicts.json`, the primaries at their Holm steps; 1 when an artifact check fails, or with
    `--science` when a primary verdict fails (each named)."""
    if not args.run_dir.is_dir():
        print(f"{args.run_dir} is not a run folder", file=sys.stderr)
        return 2
    results = check_run(args.run_dir)
    verdicts = run_verdicts(args.run_dir)
    print(f"check {args.run_dir}\n\nartifacts")
    print(describe(results))
    print("\nverdicts")
    print(describe_verdicts(verdicts))
    missing = any(result.status == "fail" for result in results)
    failing = primary_family(verdicts).failing if args.science else []
    for adjusted in failing:
        verdict = adjusted.verdict
        print(f"science: the primary {verdict.phase} {verdict.criterion} fails", file=sys.stderr)
    return 1 if missing or failing else 0


def add_check_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "check",
        help="show a run's artifacts (present, readable) and its verdicts on the plan's criteria",
    )
    parser.add_argument("run_dir", type=Path, help="run folder, e.g. runs/pilot")
    parser.add_argument(
        "--science",
        action="store_true",
        help="also exit 1 when a primary verdict (the plan's own criteria) fails at its Holm "
        "step: its adjusted interval lies wholly on the wrong side",
    )
    parser.set_defaults(handler=check)


def status(args: argparse.Namespace) -> int:
    """Say what `run` would do now for a run folder or a parameter file: each phase up to date
    or stale and why, its units, the time and teacher cost expected. Reads only."""
    try:
        parameters = run_parameters(args.run)
        phases = select_phases(None, args.notebooks_dir)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"status of run {parameters.run_name}: {parameters.run_dir}")
    print(f"parameters: {parameters.source}")
    print(last_run(parameters.layout) + "\n")
    print(describe_status(parameters, phase_statuses(parameters, phases, args.notebooks_dir)))
    return 0


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    """RUN, as `status` and `plan` read it (`pipeline.status.run_parameters`)."""
    parser.add_argument(
        "run",
        type=Path,
        help="a run folder (as `check` takes it; its provenance.json names its parameter file) "
        "or a parameter file (as `run` takes it)",
    )


def add_status_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status",
        help="what `run` would do now: each phase up to date or stale and why, its units, the "
        "time and teacher cost expected (reads only)",
    )
    add_run_argument(parser)
    parser.add_argument(
        "--notebooks-dir", type=Path, default=NOTEBOOKS_DIR, help="folder of the phase notebooks"
    )
    parser.set_defaults(handler=status)


def compare(args: argparse.Namespace) -> int:
    """Print two runs' verdicts side by side and the parameters that differ; with `--chart`,
    draw both runs' estimates per verdict. The chart module loads Altair, so it is imported
    here."""
    from teachable.pipeline.comparison import compare_runs, comparison_chart, describe_comparison
    from teachable.reports.charts import save_chart

    for folder in (args.run_a, args.run_b):
        if not folder.is_dir():
            print(f"{folder} is not a run folder", file=sys.stderr)
            return 2
    try:
        comparison = compare_runs(RunLayout(args.run_a), RunLayout(args.run_b))
    except ValueError as error:  # a verdicts.json out of its schema
        print(error, file=sys.stderr)
        return 2
    print(describe_comparison(comparison))
    if args.chart is not None:
        if not any(pair.a or pair.b for pair in comparison.pairs):
            print("chart: no verdict to draw", file=sys.stderr)
            return 0
        paths = save_chart(comparison_chart(comparison), args.chart.with_suffix(""))
        print(f"\nchart: {', '.join(str(path) for path in paths)}")
    return 0


def add_compare_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="two runs side by side: each verdict's figures and outcomes, and the parameters "
        "that differ",
    )
    parser.add_argument("run_a", type=Path, help="run folder A, e.g. runs/pilot")
    parser.add_argument("run_b", type=Path, help="run folder B")
    parser.add_argument(
        "--chart",
        type=Path,
        metavar="PATH",
        help="also draw both runs' estimates and intervals per verdict to PATH as PNG and SVG "
        "(e.g. --chart compare.png writes compare.png and compare.svg); default: no chart",
    )
    parser.set_defaults(handler=compare)


def plan(args: argparse.Namespace) -> int:
    """Print, for each primary verdict of a run, today's interval, the one expected at the
    sizes of `--for` and the sizes (with their parameters and compute) needed to decide it;
    write the plan to the run's `plan.json`."""
    from teachable.pipeline.planner import plan_run, plan_text

    try:
        parameters = run_parameters(args.run)
        planned = load_parameters(args.planned) if args.planned else parameters
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    target = args.target if args.target and args.target > 0 else None
    planned_for = str(args.planned or parameters.source)
    result = plan_run(
        parameters.layout, parameters, planned, planned_for, target, args.student_parameters
    )
    print(plan_text(result))
    print(f"\nplan: {parameters.layout.plan}")
    return 0


def add_plan_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "plan",
        help="from a run's primary verdicts: the intervals at other sizes, the sizes that "
        "would decide each, and their CPU and GPU hours (writes plan.json)",
    )
    add_run_argument(parser)
    parser.add_argument(
        "--for",
        dest="planned",
        type=Path,
        help="the parameter file planned for (default: the run's own)",
    )
    parser.add_argument(
        "--target",
        type=float,
        help="a half-width to reach instead of an interval clear of the threshold",
    )
    parser.add_argument(
        "--student-parameters",
        type=float,
        help="the student's parameter count for the GPU hours (e.g. 8e9; default: the "
        "configured student's)",
    )
    parser.set_defaults(handler=plan)


def params(args: argparse.Namespace) -> int:
    """Print every parameter key as a Markdown table per section: type, default, description,
    and with a parameter file the value it holds."""
    try:
        parameters = load_parameters(args.params_file) if args.params_file else None
    except ValueError as error:  # a missing or invalid parameter file
        print(error, file=sys.stderr)
        return 2
    print(markdown_tables(parameter_table(parameters), args.params_file))
    return 0


def markdown_tables(rows: list[dict], params_file: Path | None = None) -> str:
    """`rows` of `parameter_table` as one Markdown table per section, each under a heading and
    the section's description; a `value` column is headed by the file's name."""
    descriptions = section_descriptions()
    columns = {"key": "key", "type": "type", "default": "default"}
    if params_file is not None:
        columns["value"] = f"value in {params_file.name}"
    columns["description"] = "description"
    code = {"key", "default", "value"}
    parts = []
    for section in dict.fromkeys(row["section"] for row in rows):
        cells = [
            [_cell(row[column], column in code) for column in columns]
            for row in rows
            if row["section"] == section
        ]
        heading = section if section.startswith("(") else f"`{section}`"
        table = tabulate(
            cells, headers=list(columns.values()), tablefmt="github", disable_numparse=True
        )
        about = descriptions[section][:1].upper() + descriptions[section][1:]
        parts.append(f"#### {heading}\n\n{about}.\n\n{table}")
    return "\n\n".join(parts)


def _cell(text: str, code: bool) -> str:
    text = text.replace("|", "\\|")
    return f"`{text}`" if code else text


def add_params_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "params", help="print every parameter: type, default and description, per section"
    )
    parser.add_argument(
        "params_file", type=Path, nargs="?", help="parameter file whose values to show too"
    )
    parser.set_defaults(handler=params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teachable", description="Find, label and train on teachable moments in BabyAI."
    )
    parser.add_argument("--version", action="version", version=f"teachable {version('teachable')}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    add_label_command(commands)
    add_check_command(commands)
    add_status_command(commands)
    add_compare_command(commands)
    add_plan_command(commands)
    add_params_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m teachable` and of the `teachable` script."""
    load_dotenv(find_dotenv(usecwd=True))
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
