"""How long a phase will take: a fixed start plus its units, paced by the run's own record.

A phase costs its start (a kernel, the imports, the student loaded, the report written) plus,
for each kind of unit it has left, the count times the unit's seconds. `UnitTable` holds those
figures as measured for one student on one machine, a 2-core CPU, with their source: `PILOT`
for the embedded default student, `SMOKE` for the tiny test student. Where the run has its own
record of the phase (the last invocation that ran units of it, in its history or its
`provenance.json`), its units are paced instead by what they took there: the table's figures
scaled by the recorded wall time over what the table expected for the units that invocation
ran. A unit's size (rollouts, steps, episodes per item) is not scaled: after a change of such
a parameter, or for another student or machine before its first run, the figures give the
order of magnitude only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from teachable.parameters import ParameterError, StudentParameters, parse_parameters
from teachable.pipeline.history import load_history
from teachable.pipeline.provenance import PhaseRecord, Provenance
from teachable.pipeline.runner import NEVER_FINISHED
from teachable.pipeline.workload import (
    DOSE_TRAININGS,
    EXPERT_EPISODES,
    MATRIX_RUNS,
    MICRO_TRAININGS,
    MODELS_TO_EVALUATE,
    PREDICTOR_FITS,
    RETEST_SNAPSHOTS,
    SELECTED_MODELS,
    SELECTION_RUNS,
    SNAPSHOTS_TO_LABEL,
    STUDENT_EPISODES,
    TEST_SNAPSHOTS,
    WARMUP,
    labels_to_buy,
    phase_units,
)
from teachable.records.layout import RunLayout


@dataclass(frozen=True)
class UnitTable:
    """Seconds of a phase's start and of each kind of unit, for one student on one machine,
    and where the figures come from."""

    name: str
    start: float
    seconds: dict[str, float]
    source: str

    def work(self, units: Mapping[str, int]) -> float:
        """What the table expects for these units, the phase's start aside."""
        return sum(count * self.seconds[kind] for kind, count in units.items())


PILOT = UnitTable(
    name="2-core CPU, 135M student",
    start=10.0,  # the artifacts phase took 8 s in all; phase 1 10 s beyond its units
    seconds={
        WARMUP: 375.0,  # phase0/warmup.json: 120 LoRA steps at batch 8, with its evaluations
        STUDENT_EPISODES: 1.05,  # phase 0: 84 s for 60 student and 20 expert episodes
        EXPERT_EPISODES: 1.05,
        SNAPSHOTS_TO_LABEL: 1.4,  # 57 s for 40 (4 + 4 + 4 x 2 rollouts of 8 steps each)
        TEST_SNAPSHOTS: 1.4,  # 17 s for 12
        RETEST_SNAPSHOTS: 1.25,  # 10 s for 8
        DOSE_TRAININGS: 11.5,  # 5 min 10 s for 27 on an idle machine (pilot at 4bc3cb9)
        MICRO_TRAININGS: 30.0,  # 6 min 9 s for 12, true and control, on an idle machine
        MATRIX_RUNS: 11.5,  # 161 s for 14 runs of 6 steps at batch 4
        MODELS_TO_EVALUATE: 9.0,  # 135 s for 15 models, 12 items of 1 episode each
        PREDICTOR_FITS: 3.0,  # 15 s for 5 folds, then the final fit
        labels_to_buy("oracle"): 5.3,  # 63 s for 12 candidates
        labels_to_buy("learnability"): 0.8,  # 9.5 s for 12
        SELECTION_RUNS: 34.0,  # 171 s for 5 runs of 8 steps at batch 4
        SELECTED_MODELS: 31.0,  # 186 s for the base and 5 runs
    },
    source="the pilot (parameters/pilot.yaml: SmolLM2-135M, float32) on a 2-core AMD EPYC CPU, "
    "torch 2.13.0+cpu, 2026-12-05, 17 min 15 s in all: each phase's wall time in its "
    "provenance.json and the times of its progress bars in its reports",
)

SMOKE = UnitTable(
    name="2-core CPU, tiny student",
    start=8.0,  # the artifacts phase took 6 s in all, phase 4 9 s for 4 fits
    seconds={
        WARMUP: 12.5,  # phase0/warmup.json: 4 LoRA steps at batch 4, with its evaluations
        STUDENT_EPISODES: 0.3,  # phase 0: 3 s beyond its start for 6 student, 4 expert episodes
        EXPERT_EPISODES: 0.3,
        SNAPSHOTS_TO_LABEL: 0.3,  # 1.2 s for 4
        TEST_SNAPSHOTS: 0.3,
        RETEST_SNAPSHOTS: 0.3,  # 0.6 s for 2
        DOSE_TRAININGS: 0.5,  # a few steps with anchor states, and the probes
        MICRO_TRAININGS: 1.0,  # 0.3 s of rollouts before and 3.6 s of training for 4
        MATRIX_RUNS: 0.6,  # 9.8 s for 16
        MODELS_TO_EVALUATE: 0.65,  # 11 s for 17
        PREDICTOR_FITS: 0.25,
        labels_to_buy("oracle"): 0.6,
        labels_to_buy("learnability"): 0.15,
        SELECTION_RUNS: 0.85,  # 8.3 s for 10
        SELECTED_MODELS: 1.0,  # 11 s for the base and 10 runs
    },
    source="the smoke run (parameters/smoke.yaml: the tiny student) on the same CPU, "
    "2026-12-05, 2 min 07 s in all, measured the same way",
)


def unit_table(student: StudentParameters) -> UnitTable:
    """The table for the run's student: the tiny one's, else the default's."""
    return SMOKE if student.model == "tiny" else PILOT


@dataclass(frozen=True)
class RecordedPhase:
    """A phase as the run last ran units of it: the units it had left and its wall time."""

    units: dict[str, int]
    seconds: float
    finished_at: str

    @property
    def day(self) -> str:
        return self.finished_at[:10]

    def line(self) -> str:
        """`1 min 34 s for 60 student episodes, 20 expert episodes on 2026-12-05`."""
        return f"{duration(self.seconds)} for {describe_units(self.units)} on {self.day}"


@dataclass(frozen=True)
class PhaseTime:
    """The time a phase is expected to take, and the run's own record that paced it (None:
    the table did)."""

    seconds: float
    paced_by: RecordedPhase | None = None

    @property
    def basis(self) -> str:
        """`this run, 2026-12-05` or `table`."""
        return "table" if self.paced_by is None else f"this run, {self.paced_by.day}"


def _seconds_between(started: str, finished: str) -> float:
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def _fresh_units(phase: str, provenance: Provenance) -> dict[str, int] | None:
    """The units a phase plans on its first run with the recorded parameters, for a phase
    record that lists none; None when those parameters no longer load."""
    try:
        parameters = parse_parameters(provenance.parameters, Path(provenance.parameter_file))
    except ParameterError:
        return None
    return {units.kind: units.planned for units in phase_units(phase, parameters, None)}


def _recorded(
    record: PhaseRecord, units: dict[str, int] | None, table: UnitTable
) -> RecordedPhase | None:
    """The record as a paced phase, when it ran units to the end."""
    ran = record.status in ("ran", "gate failed") and record.started_at and record.finished_at
    if not ran or not units or table.work(units) <= 0:
        return None
    seconds = _seconds_between(record.started_at, record.finished_at)
    return RecordedPhase(units, seconds, record.finished_at)


def recorded_phase(run: RunLayout, phase: str, table: UnitTable) -> RecordedPhase | None:
    """The phase as the run last ran units of it: the history newest first, then
    `provenance.json` when the history does not hold its invocation."""
    try:
        history = load_history(run)
    except ValueError:  # an unreadable history gives no pace; `status` says it is unreadable
        history = []
    for invocation in reversed(history):
        for record in invocation.phases:
            if record.name == phase and (found := _recorded(record, record.units, table)):
                return found
    provenance = Provenance.load(run)
    if provenance is None or provenance.started_at in {i.started_at for i in history}:
        return None
    for record in provenance.phases:
        if record.name == phase:
            first_run = record.reason.startswith(NEVER_FINISHED)
            units = record.units or (_fresh_units(phase, provenance) if first_run else None)
            return _recorded(record, units, table)
    return None


def expected_time(
    units: Mapping[str, int], recorded: RecordedPhase | None, table: UnitTable
) -> PhaseTime:
    """The phase's start plus its units, at the run's own pace when it has one, else at the
    table's."""
    work = table.work(units)
    if recorded is None:
        return PhaseTime(table.start + work)
    pace = max(recorded.seconds - table.start, 0.0) / table.work(recorded.units)
    return PhaseTime(table.start + pace * work, recorded)


def describe_units(units: Mapping[str, int]) -> str:
    """`40 snapshots to label, 12 test snapshots to label`."""
    return ", ".join(f"{count} {kind}" for kind, count in units.items() if count) or "no unit"


def duration(seconds: float) -> str:
    """`45 s`, `12 min 05 s`, `2 h 03 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
