"""Dose calibration: drift and specificity over a grid of doses, per kind of training and
format, and the check of the chosen dose on probe states and snapshots it was not chosen on.

A `micro` dose is measured by training each calibration snapshot alone; a `cell` dose by one
training on all of them together. Every training is a unit of work; its result is the per-state
change of the policy at the probe states of one half and at its trained states, pooled per dose
by `measure.specificity`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from teachable.measure.dose import within_budget
from teachable.measure.specificity import PolicyChanges, drift_and_specificity
from teachable.models.lora import train_lora
from teachable.models.probes import policy_changes
from teachable.models.reference_states import anchor_for, probes_for, trained_tasks
from teachable.models.student import Student
from teachable.models.supervision import sft_examples
from teachable.parameters import DoseGrid, LoraParameters
from teachable.records.dose import Dose, DosePoint, Half, Kind, ReferenceState
from teachable.records.labeled import LabeledSnapshot
from teachable.vocabulary import Format

Result = TypeVar("Result")

CALIBRATION_SEED = 0  # the LoRA seed doses are chosen at (the check's are parameters)


def grid_doses(grid: DoseGrid) -> list[Dose]:
    """Every dose of the grid, in a fixed order."""
    return [
        Dose(learning_rate=rate, steps=steps, anchor_weight=weight)
        for rate, steps, weight in itertools.product(
            grid.learning_rates, grid.steps, grid.anchor_weights
        )
    ]


@dataclass(frozen=True)
class ProbedTraining:
    """A unit of the calibration: one adapter at `dose` on `rows` in `format`, probed at the
    probe states of `half` (of tasks it was not trained on) and at its trained states;
    `retention` also probes the retention states of that half alone; `targets` replace the
    rows' expert actions (a control's wrong or shuffled targets)."""

    dose: Dose
    rows: tuple[LabeledSnapshot, ...]
    format: Format
    lora: LoraParameters
    anchors: tuple[ReferenceState, ...]
    anchor_per_step: int
    probes: tuple[ReferenceState, ...]
    half: Half
    retention: bool = False
    targets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Probed:
    """What a probed training hands back: its changes at all probe states of its half, and
    at that half's retention states when asked."""

    changes: PolicyChanges
    retention: PolicyChanges | None


def probe_training(student: Student, unit: ProbedTraining) -> Probed:
    """The work of a calibration unit: train the adapter, then score both students once."""
    history = student.params.history
    examples = sft_examples(unit.rows, unit.format, history, targets=unit.targets)
    anchor = anchor_for(unit.anchors, unit.dose, unit.anchor_per_step, history)
    trained = train_lora(student, examples, unit.dose.lora(unit.lora), anchor=anchor).student
    seen = trained_tasks(unit.rows)
    probes = probes_for(unit.probes, seen, history, half=unit.half)
    retention = None
    if unit.retention:
        at_retention = probes_for(unit.probes, seen, history, half=unit.half, part="retention")
        retention = policy_changes(student, trained, at_retention, examples)
    return Probed(policy_changes(student, trained, probes, examples), retention)


def unit_key(unit: ProbedTraining, student: dict) -> str:
    """Everything that shapes a calibration training's changes, hashed: its log line's key."""
    shaping = {
        "dose": unit.dose.model_dump(mode="json"),
        "rows": [row.id for row in unit.rows],
        "format": unit.format,
        "lora": unit.lora.model_dump(mode="json"),
        "anchors": [state.model_dump(mode="json") for state in unit.anchors],
        "per_step": unit.anchor_per_step,
        "probes": [state.model_dump(mode="json") for state in unit.probes],
        "half": unit.half,
        "retention": unit.retention,
        "targets": unit.targets,
        "student": student,
    }
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Trainee:
    """A kind of training to calibrate: the formats it trains in, its batch shape, the dose
    its phase pins (if any), and how many snapshots one of its trainings takes."""

    kind: Kind
    formats: tuple[Format, ...]
    lora: LoraParameters
    pinned: Dose | None
    size: int

    def trainings(self, rows: Sequence[LabeledSnapshot]) -> list[tuple[LabeledSnapshot, ...]]:
        """The training sets a dose is measured with: each snapshot alone, or `size` of them."""
        rows = rows[: self.size]
        return [(row,) for row in rows] if self.kind == "micro" else [tuple(rows)]


@dataclass(frozen=True)
class Measurement:
    """The trainings one figure pools: one dose of one kind and format, on one probe half, at
    each of `seeds` (every seed training the same snapshots)."""

    kind: Kind
    format: Format
    dose: Dose
    units: tuple[ProbedTraining, ...]
    seeds: tuple[int, ...] = (CALIBRATION_SEED,)

    def by_seed(self, results: Sequence[Result]) -> list[list[Result]]:
        """The units' results (in the units' order) grouped by training seed."""
        return [
            [r for unit, r in zip(self.units, results, strict=True) if unit.lora.seed == seed]
            for seed in self.seeds
        ]


def measurement(
    trainee: Trainee,
    format: Format,
    dose: Dose,
    rows: Sequence[LabeledSnapshot],
    anchors: Sequence[ReferenceState],
    probes: Sequence[ReferenceState],
    per_step: int,
    half: Half,
    seeds: Sequence[int] = (CALIBRATION_SEED,),
) -> Measurement:
    """The trainings of `dose` on `rows` at each of `seeds`, probed on `half` (with its
    retention states for a demo cell checked)."""
    base = ProbedTraining(
        dose=dose,
        rows=(),
        format=format,
        lora=trainee.lora,
        anchors=tuple(anchors),
        anchor_per_step=per_step,
        probes=tuple(probes),
        half=half,
        retention=half == "check" and trainee.kind == "cell" and format == "demo",
    )
    units = tuple(
        replace(base, rows=trained, lora=trainee.lora.model_copy(update={"seed": seed}))
        for seed in seeds
        for trained in trainee.trainings(rows)
    )
    return Measurement(trainee.kind, format, dose, units, tuple(seeds))


def grid_measurements(
    trainee: Trainee,
    grid: DoseGrid,
    rows: Sequence[LabeledSnapshot],
    anchors: Sequence[ReferenceState],
    probes: Sequence[ReferenceState],
    per_step: int,
) -> list[Measurement]:
    """Every dose of the grid in every format of `trainee`, on the calibration half."""
    return [
        measurement(trainee, format, dose, rows, anchors, probes, per_step, "calibration")
        for format in trainee.formats
        for dose in grid_doses(grid)
    ]


def dose_point(measured: Measurement, changes: Sequence[PolicyChanges], budget: float) -> DosePoint:
    """A grid point's drift and specificity, pooled over its trainings."""
    probe = drift_and_specificity(measured.by_seed(changes))
    return DosePoint(
        kind=measured.kind,
        format=measured.format,
        dose=measured.dose,
        probe=probe,
        n_trainings=len(changes),
        within_budget=within_budget(probe, budget),
    )


def calibration_rows(
    rows: Sequence[LabeledSnapshot], probes: Sequence[ReferenceState], size: int, seed: int
) -> tuple[list[LabeledSnapshot], list[LabeledSnapshot]]:
    """Two disjoint sets of up to `size` snapshots, whole tasks each, none from a probed task:
    the first to choose doses on, the second to check the choice on. Tasks are dealt in a
    seeded order to the set that holds fewer snapshots."""
    probed = {state.state.task for state in probes}
    tasks = sorted({row.task for row in rows} - probed)
    chosen: list[LabeledSnapshot] = []
    checked: list[LabeledSnapshot] = []
    for index in np.random.default_rng(seed).permutation(len(tasks)):
        target = chosen if len(chosen) <= len(checked) else checked
        if len(target) < size:
            target += [row for row in rows if row.task == tasks[index]][: size - len(target)]
    return chosen, checked
