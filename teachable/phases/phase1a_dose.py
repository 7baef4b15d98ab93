"""Phase 1A: the training dose, calibrated before any training that measures teachability.

Every training after the warm-up must teach its states without moving the whole policy. On the
labeled part only, this phase fixes the reference states (`models.reference_states`: the
anchor replay set and the probe set, each saved), then, for each kind of training (`micro`, one
snapshot, Phase 1B; `cell`, many snapshots, Phases 2 and 5) and each format it will train in,
trains every dose of `training.grid` and measures drift and specificity on the calibration
half of the probes. The dose with the largest specificity within `training.drift_budget` is
chosen, unless the phase's parameters pin one (`phase1b.dose`, `phase2.dose`). Each chosen
dose is trained anew at each of `training.check_seeds` on other snapshots and probed on the
check half, its intervals crossing seeds with states: a kind with no dose shown specific there,
or a cell dose that drifts beyond the budget or loses log pi(a*) at retention states
(do-no-harm), fails the gate and stops the run.

Each training's changes go to `calibration.jsonl` as it ends (a rerun keeps those still asked
for); the curve, the choices and the verdicts to `dose.json` and the run's `verdicts.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from teachable.measure.dose import choose, gate_outcome, harm_verdicts, specificity_verdict
from teachable.measure.specificity import PolicyChanges, drift_and_specificity
from teachable.models.dose_calibration import (
    Measurement,
    Probed,
    ProbedTraining,
    Trainee,
    calibration_rows,
    dose_point,
    grid_measurements,
    measurement,
    probe_training,
    unit_key,
)
from teachable.models.evaluation import retention_tasks
from teachable.models.reference_states import anchor_states, probe_states
from teachable.models.workers import Workers, WorkUnit
from teachable.parameters import (
    LoraParameters,
    Phase1BParameters,
    Phase2Parameters,
    Phase3Parameters,
    TrainingParameters,
)
from teachable.records.dose import (
    PHASE,
    DoseCalibration,
    DoseChoice,
    ReferenceState,
    save_reference_states,
)
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import Phase1ALayout
from teachable.records.store import append_jsonl, read_jsonl
from teachable.records.verdicts import save_phase_verdicts
from teachable.world.splits import Split
from teachable.world.tasks import task_suite


def trainees(
    phase1b: Phase1BParameters, phase2: Phase2Parameters, lora: LoraParameters, snapshots: int
) -> list[Trainee]:
    """The micro-training of 1B (every format when it trains each snapshot's route) and the
    cells of Phase 2 (its formats, and demo for the baselines and Phase 5)."""
    return [
        Trainee("micro", phase1b.trained_formats, phase1b.over(lora), phase1b.dose, snapshots),
        Trainee("cell", phase2.trained_formats, phase2.over(lora), phase2.dose, phase2.n_train),
    ]


def probe_set(
    split: Split,
    training: TrainingParameters,
    phase3: Phase3Parameters,
    levels: Sequence[str],
    seed: int,
) -> list[ReferenceState]:
    """Expert states on labeled-part tasks and on retention-level tasks Phase 3 does not play
    (the retention suite past Phase 3's own tasks)."""
    played = set(retention_tasks(phase3, levels, seed))
    count = training.probe_retention_tasks
    suite = task_suite("retention", len(played) + count, phase3.retention_levels or levels, seed)
    unplayed = [task for task in suite.tasks if task not in played][:count]
    per_task = training.probe_states_per_task
    return probe_states(split.tasks("labeled"), unplayed, training.probe_tasks, per_task, seed)


def run_units(
    measurements: Sequence[Measurement], workers: Workers, log: Path, progress: bool
) -> dict[str, Probed]:
    """Every training's result by its key: logged ones are read back, the rest trained and
    logged as each ends."""
    student = workers.params.model_dump(mode="json", exclude={"batch_size"})
    units: dict[str, ProbedTraining] = {
        unit_key(unit, student): unit for measured in measurements for unit in measured.units
    }
    done: dict[str, Probed] = {}
    for line in read_jsonl(log):
        if line["key"] in units:
            retention = line["retention"] and PolicyChanges.from_lists(line["retention"])
            done[line["key"]] = Probed(PolicyChanges.from_lists(line["changes"]), retention)
    pending = [WorkUnit(key, unit) for key, unit in units.items() if key not in done]
    trained = workers.map(probe_training, pending, "dose calibration", len(pending), progress)
    for unit, probed in trained:
        retention = probed.retention and probed.retention.lists()
        line = {"key": unit.id, "changes": probed.changes.lists(), "retention": retention}
        append_jsonl(log, line)
        done[unit.id] = probed
    return done


def _results(measured: Measurement, done: dict[str, Probed], student: dict) -> list[Probed]:
    return [done[unit_key(unit, student)] for unit in measured.units]


@dataclass
class DoseReport:
    """What `calibrate_dose` did: the calibration as saved, and the reference states."""

    calibration: DoseCalibration
    anchors: list[ReferenceState]
    probes: list[ReferenceState]


def calibrate_dose(
    rows: Sequence[LabeledSnapshot],
    split: Path,
    training: TrainingParameters,
    phase1b: Phase1BParameters,
    phase2: Phase2Parameters,
    phase3: Phase3Parameters,
    lora: LoraParameters,
    levels: Sequence[str],
    seed: int,
    workers: Workers,
    out: Phase1ALayout,
    progress: bool = True,
    verdicts: Path | None = None,
) -> DoseReport:
    """All of Phase 1A on the labeled `rows`, resumable, into `out` (and the gate's verdicts
    into `verdicts`, the run's verdicts file, when given)."""
    parts = Split.load(split)
    parts.check_within("labeled", rows, "phase 1a")
    anchors = anchor_states(levels, seed, training.anchor_tasks)
    probes = probe_set(parts, training, phase3, levels, seed)
    save_reference_states(out.anchor_states, anchors)
    save_reference_states(out.probe_states, probes)
    kinds = trainees(phase1b, phase2, lora, training.calibration_snapshots)
    chosen_on, checked_on = calibration_rows(rows, probes, max(k.size for k in kinds), seed)
    if not chosen_on or not checked_on:
        raise ValueError(
            f"{len(rows)} labeled snapshot(s) leave none to choose or check a dose on outside "
            "the probed tasks: label more snapshots, or lower training.probe_tasks"
        )
    student = workers.params.model_dump(mode="json", exclude={"batch_size"})
    per_step, budget = training.anchor_per_step, training.drift_budget
    grid = [
        measured
        for kind in kinds
        if kind.pinned is None
        for measured in grid_measurements(kind, training.grid, chosen_on, anchors, probes, per_step)
    ]
    done = run_units(grid, workers, out.log, progress)
    points = [
        dose_point(measured, [r.changes for r in _results(measured, done, student)], budget)
        for measured in grid
    ]
    choices = []
    for kind in kinds:
        for format in kind.formats:
            curve = [p for p in points if p.kind == kind.kind and p.format == format]
            dose = kind.pinned or choose(curve).dose
            source = "pinned" if kind.pinned else "calibrated"
            choices.append((kind, format, dose, source))
    seeds = training.check_seeds
    checks = [
        measurement(kind, format, dose, checked_on, anchors, probes, per_step, "check", seeds)
        for kind, format, dose, _ in choices
    ]
    done = run_units(checks, workers, out.log, progress)
    chosen, specific, harm = [], [], []
    for (kind, format, dose, source), measured in zip(choices, checks, strict=True):
        results = _results(measured, done, student)
        check = drift_and_specificity(measured.by_seed([r.changes for r in results]))
        retention = None
        if results[0].retention is not None:
            retention = drift_and_specificity(measured.by_seed([r.retention for r in results]))
            harm = harm_verdicts(check, retention, budget, training.retention_tolerance)
        specific.append(specificity_verdict(kind.kind, format, check))
        chosen.append(
            DoseChoice(
                kind=kind.kind,
                format=format,
                dose=dose,
                source=source,
                check=check,
                retention=retention,
            )
        )
    calibration = DoseCalibration(
        drift_budget=budget,
        points=points,
        chosen=chosen,
        verdicts=[*specific, *harm],
        outcome=gate_outcome(specific, harm),
    )
    calibration.save(out.dose)
    if verdicts is not None:
        save_phase_verdicts(verdicts, PHASE, calibration.verdicts)
    return DoseReport(calibration, anchors, probes)
