"""What `run` would do now, without doing it: `status RUN` and `run PARAMS --dry-run`.

For each phase: up to date, or stale and why (the runner's own reason, or an earlier phase
that runs first and rewrites one of its inputs), the units it would run (`pipeline.workload`),
the time expected (`pipeline.unit_times`) and, with a chat-model teacher, the answers, tokens
and cost expected (`pipeline.teacher_cost`). Everything here reads; nothing is created or
changed, not even the run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tabulate import tabulate

from teachable.parameters import Parameters, load_parameters
from teachable.pipeline.history import load_history
from teachable.pipeline.lock import running_holder
from teachable.pipeline.provenance import Provenance
from teachable.pipeline.runner import PARAMETERS_CHANGED, Phase, missing_input, stale_reason
from teachable.pipeline.teacher_cost import TeacherCost, expected_cost
from teachable.pipeline.unit_times import (
    PhaseTime,
    duration,
    expected_time,
    recorded_phase,
    unit_table,
)
from teachable.pipeline.workload import Units, phase_units
from teachable.records.layout import RunLayout


def run_parameters(target: Path) -> Parameters:
    """The parameters of RUN: a parameter file, as `run` takes it, or a run folder, as `check`
    takes it, whose `provenance.json` names the parameter file it ran with (read as that file
    is now: a `--set` of that run is not in it)."""
    target = Path(target)
    if not target.is_dir():
        return load_parameters(target)
    provenance = Provenance.load(RunLayout(target))
    if provenance is None:
        raise ValueError(
            f"{target} holds no readable provenance.json to name its parameter file: "
            "give the parameter file instead"
        )
    parameters = load_parameters(provenance.parameter_file)
    if parameters.run_dir != target.resolve():
        raise ValueError(
            f"{provenance.parameter_file}, which {target} ran with, now names the run folder "
            f"{parameters.run_dir}: give the parameter file instead"
        )
    return parameters


def last_run(run: RunLayout) -> str:
    """The last invocation on record (its history, else its `provenance.json`), and a run in
    progress in the folder."""
    holder = running_holder(run.lock)
    in_progress = f"\nin progress: {holder.describe()}" if holder else ""
    try:
        history = load_history(run)
    except ValueError as error:
        return f"history unreadable: {error}{in_progress}"
    if history:
        return f"last run: {history[-1].line()}; {len(history)} in {run.history.name}{in_progress}"
    provenance = Provenance.load(run)
    if provenance is not None:
        return (
            f"last run: {provenance.started_at} {provenance.status} (no history yet){in_progress}"
        )
    return f"last run: none on record{in_progress}"


@dataclass(frozen=True)
class PhaseStatus:
    """One phase as `run` would find it: why it would run (None: up to date), its units,
    whether it surely keeps those on record (not when its parameters changed: then only those
    whose key is unchanged), the time expected when it keeps them and when it redoes them, and
    why the run would stop before it."""

    phase: Phase
    reason: str | None
    units: list[Units]
    keeps: bool
    time: PhaseTime | None = None
    time_redone: PhaseTime | None = None
    stops: str | None = None

    def left(self, kept: bool) -> dict[str, int]:
        """How many units of each kind it would run, keeping those on record or not."""
        return {units.kind: units.left(kept) for units in self.units}

    @property
    def may_redo(self) -> bool:
        """Whether units on record might be redone: its parameters changed."""
        return not self.keeps and any(units.on_record for units in self.units)

    def teacher_answers(self) -> int:
        """The teacher answers its units would ask, at most."""
        return sum(units.left(self.keeps) * units.teacher_answers for units in self.units)


def phase_statuses(
    parameters: Parameters, phases: Sequence[Phase], notebooks_dir: Path, force: bool = False
) -> list[PhaseStatus]:
    """Each phase of `phases`, in order, as `run` would find it; a phase that is up to date
    but reads what an earlier running phase rewrites would run too, and says so."""
    run, table = parameters.layout, unit_table(parameters.student)
    rewritten: dict[Path, str] = {}
    statuses = []
    for phase in phases:
        reason = "forced" if force else stale_reason(parameters, phase, notebooks_dir)
        upstream = [
            path for path in (*phase.inputs(run), *phase.optional_inputs(run)) if path in rewritten
        ]
        if reason is None and upstream:
            reason = f"phase {rewritten[upstream[0]]} runs before it and rewrites {upstream[0]}"
        units = phase_units(phase.name, parameters, run)
        status = PhaseStatus(phase, reason, units, keeps=reason != PARAMETERS_CHANGED)
        if reason is not None:
            recorded = recorded_phase(run, phase.name, table)
            status = replace(
                status,
                time=expected_time(status.left(kept=True), recorded, table),
                time_redone=expected_time(status.left(kept=False), recorded, table),
                stops=missing_input(parameters, phase, rewritten),
            )
            rewritten.update(dict.fromkeys(phase.outputs(run), phase.name))
        statuses.append(status)
    return statuses


def _units_cell(status: PhaseStatus) -> str:
    """`28 snapshots to label (12 of 40 kept)`, one kind per line; where the parameters
    changed, the count redoing every unit on record."""
    lines = []
    for units in status.units:
        line = f"{units.left(status.keeps)} {units.kind}"
        if units.on_record:
            kept = "kept" if status.keeps else "on record, kept if their key is unchanged"
            line += f" ({units.on_record} of {units.planned} {kept})"
        lines.append(line)
    return "\n".join(lines) or "-"


def _expected(status: PhaseStatus) -> str:
    """`1 min 05 s`, or `12 s to 26 s` when units on record might be redone."""
    if not status.may_redo:
        return duration(status.time.seconds)
    return f"{duration(status.time.seconds)} to {duration(status.time_redone.seconds)}"


def _shortened(reason: str, run: RunLayout) -> str:
    """The reason with paths in the run folder, or below the working folder, relative."""
    for folder in (run.folder, Path.cwd()):
        reason = reason.replace(f"{folder}/", "")
    return reason


def status_table(statuses: Sequence[PhaseStatus], run: RunLayout) -> str:
    """One row per phase: state, why (paths relative to the run folder), the units it would
    run, the time expected and what paced it."""
    rows = []
    for status in statuses:
        if status.reason is None:
            rows.append([status.phase.name, "up to date", "", "", "", ""])
            continue
        why = status.reason + (f"; the run stops here: {status.stops}" if status.stops else "")
        why = _shortened(why, run)
        cells = [why, _units_cell(status), _expected(status), status.time.basis]
        rows.append([status.phase.name, "stale", *cells])
    headers = ["phase", "state", "why", "units to run", "expected", "paced by"]
    return tabulate(
        rows,
        headers=headers,
        tablefmt="simple",
        maxcolwidths=[None, None, 40],
        disable_numparse=True,
    )


def teacher_cost(parameters: Parameters, statuses: Sequence[PhaseStatus]) -> TeacherCost | None:
    """The chat-model teacher's expected cost over the phases that would run; None for the
    bot, which costs nothing."""
    if parameters.teacher.backend != "openai":
        return None
    answers = sum(status.teacher_answers() for status in statuses if status.reason)
    return expected_cost(parameters.teacher, answers, parameters.layout)


def _teacher_lines(parameters: Parameters, statuses: Sequence[PhaseStatus]) -> list[str]:
    """The teacher's expected answers, tokens and cost, by phase."""
    teacher, cost = parameters.teacher, teacher_cost(parameters, statuses)
    if cost is None:
        return [f"teacher: {teacher.backend}: no tokens, no cost"]
    by_phase = ", ".join(
        f"phase {s.phase.name} {s.teacher_answers()}"
        for s in statuses
        if s.reason is not None and s.teacher_answers()
    )
    lines = [f"teacher: {teacher.backend} {teacher.model}: {cost.line()}"]
    if by_phase:
        lines.append(f"  answers by phase: {by_phase}; answers in its cache cost nothing")
    return lines


def describe_status(parameters: Parameters, statuses: Sequence[PhaseStatus]) -> str:
    """The table, the total time expected, the run's own pace behind it, the teacher's
    expected cost, and what the units and times mean."""
    running = [status for status in statuses if status.reason is not None]
    table = unit_table(parameters.student)
    lines = [status_table(statuses, parameters.layout), ""]
    if running:
        low = sum(status.time.seconds for status in running)
        high = sum(status.time_redone.seconds for status in running)
        total = duration(low) + (f" to {duration(high)}" if high > low else "")
        names = ", ".join(status.phase.name for status in running)
        lines.append(f"expected: {total} for {len(running)} phase(s): {names}")
    else:
        lines.append("expected: nothing to run, every phase is up to date")
    lines += [
        f"  phase {status.phase.name} last took {status.time.paced_by.line()}"
        for status in running
        if status.time.paced_by is not None
    ]
    lines += _teacher_lines(parameters, statuses)
    lines += [
        "units: those on record are kept; where the phase's parameters changed, only those "
        "whose key is unchanged, and the time is a range",
        f"times: {table.start:g} s per phase plus its units, paced by this run's own last time "
        f"for the phase where it has one, else by the table for a {table.name} "
        f"(teachable/pipeline/unit_times.py: {table.source})",
    ]
    return "\n".join(lines)
