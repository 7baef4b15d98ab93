"""Labeling: U, leverage and CPT of snapshots, measured by the student's rollouts, in units
that workers run.

A unit (`Measurement`) is a group of snapshots with the teacher's answers: all their conditions
go through one batched rollout run (`models.conditions`), and `measure.labels` turns the
outcomes into the labels. U needs no rollout: it is read from the distribution the student
acted from. `labeling_parameters` names every parameter that shapes a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from teachable.measure.labels import cpt_from_outcomes, leverage_from_outcomes
from teachable.models.conditions import (
    LABELS,
    STREAMS,
    outcomes,
    rollout_plan,
    run_conditions,
    teacher_request,
)
from teachable.models.rollouts import Episode
from teachable.models.student import Student, normalized_entropy
from teachable.models.supervision import patch_text
from teachable.models.teachers import Teacher, TeacherMonitor
from teachable.models.workers import Workers, WorkUnit
from teachable.parameters import Phase1Parameters, StudentParameters, TeacherParameters
from teachable.records.labeled import CPT, LabeledSnapshot, Leverage, TeacherAnswer
from teachable.records.snapshot import Snapshot
from teachable.vocabulary import FORMATS, UMethod
from teachable.world.text_world import expert_trajectory


def uncertainty(probs: np.ndarray, method: UMethod = "entropy") -> np.ndarray:
    """U per row, 0 for a one-hot and 1 for a uniform distribution: the normalized entropy
    (`entropy`), one minus the gap between the two likeliest actions (`margin`), or one minus
    the top probability, scaled by k / (k - 1) (`top1`)."""
    probs = np.asarray(probs, dtype=float)
    k = probs.shape[-1]
    if method == "entropy":
        return normalized_entropy(probs)
    ordered = np.sort(probs, axis=-1)
    if method == "margin":
        values = 1.0 - (ordered[..., -1] - ordered[..., -2])
    elif method == "top1":
        values = (1.0 - ordered[..., -1]) * k / (k - 1)
    else:
        raise ValueError(f"unknown U_method {method!r}; known: entropy, margin, top1")
    return np.clip(values, 0.0, 1.0)


def snapshot_uncertainty(snapshot: Snapshot, method: UMethod) -> float:
    """U of the student's distribution recorded at the snapshot, over its valid actions.

    The recorded distribution is the one the student acted from; taking it, rather than
    scoring the state again, keeps U exact whatever batch a relabeling would score it in."""
    probs = np.array([snapshot.student_distribution[a] for a in snapshot.valid_actions])
    return round(float(uncertainty(probs, method)), 6)


def expert_reach(snapshot: Snapshot, max_steps: int) -> float:
    """1.0 when the bot still finishes the task from the snapshot within `max_steps`, else 0.0."""
    return float(expert_trajectory(snapshot.state, max_steps)[1])


@dataclass(frozen=True)
class Measured:
    """What one batch of rollouts measured for one snapshot."""

    leverage: Leverage | None
    cpt: CPT | None


def measured_from(
    snapshots: Sequence[Snapshot],
    episodes: dict[tuple[str, str], list[Episode]],
    phase1: Phase1Parameters,
    leverage: bool,
    cpt: bool,
) -> list[Measured]:
    """Leverage and/or CPT of each snapshot from its conditions' episodes."""
    measured = []
    for snapshot in snapshots:
        result = {name: outcomes(runs) for (i, name), runs in episodes.items() if i == snapshot.id}
        lever = None
        if leverage:
            upper = expert_reach(snapshot, phase1.max_steps) if phase1.L_upper else None
            lever = leverage_from_outcomes(result["base"], result["forced"], upper)
        patch = cpt_from_outcomes(result) if cpt else None
        measured.append(Measured(lever, patch))
    return measured


def measure(
    student: Student,
    snapshots: Sequence[Snapshot],
    answers: Sequence[TeacherAnswer | None],
    phase1: Phase1Parameters,
    seed: int,
    *,
    leverage: bool = True,
    cpt: bool = True,
    progress: bool = False,
    family: str = LABELS,
    share_scores: bool = True,
) -> list[Measured]:
    """Leverage and/or CPT for each snapshot, from one batched run of all their rollouts on
    the streams of `family` (`share_scores=False`: every prompt scored itself, the reference)."""
    conditions = [
        condition
        for snapshot, answer in zip(snapshots, answers, strict=True)
        for condition in rollout_plan(snapshot, answer, phase1, leverage, cpt)
    ]
    episodes = run_conditions(student, conditions, phase1, seed, family, progress, share_scores)
    return measured_from(snapshots, episodes, phase1, leverage, cpt)


@dataclass(frozen=True)
class Measurement:
    """A unit of Phase 1: leverage and/or CPT of a group of snapshots, with the teacher's
    answers (None where CPT is not measured), on the streams of `family`."""

    snapshots: tuple[Snapshot, ...]
    answers: tuple[TeacherAnswer | None, ...]
    phase1: Phase1Parameters
    seed: int
    leverage: bool
    cpt: bool
    family: str = LABELS

    def unit(self) -> WorkUnit:
        """The measurement as a unit for workers, named after its family and first snapshot."""
        first, more = self.snapshots[0].id, len(self.snapshots) - 1
        return WorkUnit(f"{self.family} of {first}" + (f" and {more} more" if more else ""), self)


def measure_unit(student: Student, measurement: Measurement) -> list[Measured]:
    """The work of a Phase 1 unit: one batched rollout run for its snapshots."""
    m = measurement
    return measure(
        student,
        m.snapshots,
        m.answers,
        m.phase1,
        m.seed,
        leverage=m.leverage,
        cpt=m.cpt,
        family=m.family,
    )


def run_measurements(
    workers: Workers, measurements: Iterable[Measurement], desc: str, total: int, progress: bool
) -> Iterator[tuple[Measurement, list[Measured]]]:
    """Each measurement's results as its unit ends (in the order units end)."""
    units = (measurement.unit() for measurement in measurements)
    for unit, measured in workers.map(measure_unit, units, desc, total, progress):
        yield unit.payload, measured


def in_groups(items: Sequence, size: int) -> list[Sequence]:
    """`items` in consecutive groups of `size` (the last may be smaller)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def labeling_measurements(
    teacher: Teacher,
    pending: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    monitor: TeacherMonitor | None,
) -> Iterator[Measurement]:
    """The labeling units of `pending`, `phase1.batch_snapshots` at a time; each group's
    teacher answers (counted by `monitor`) are asked for when its unit is about to start."""
    for group in in_groups(pending, phase1.batch_snapshots):
        answers = teacher.advise([teacher_request(s) for s in group], monitor=monitor)
        yield Measurement(
            tuple(group),
            tuple(answers),
            phase1,
            seed,
            leverage=not phase1.skip_leverage,
            cpt=not phase1.skip_cpt,
        )


def labeled_rows(measurement: Measurement, measured: Sequence[Measured]) -> list[LabeledSnapshot]:
    """Every label of a labeling unit's snapshots: U, and the leverage and CPT it measured."""
    return [
        row.model_copy(update={"cpt": result.cpt, "teacher": answer, "quadrant": None})
        for row, answer, result in zip(
            leverage_rows(measurement, measured), measurement.answers, measured, strict=True
        )
    ]


def leverage_rows(measurement: Measurement, measured: Sequence[Measured]) -> list[LabeledSnapshot]:
    """U and the leverage a unit measured, with no teacher and no CPT: the rows of the split's
    test snapshots, which are played from and placed in quadrants, never trained on."""
    phase1 = measurement.phase1
    return [
        LabeledSnapshot.of(snapshot).model_copy(
            update={
                "U": snapshot_uncertainty(snapshot, phase1.U_method),
                "U_method": phase1.U_method,
                "leverage": result.leverage,
            }
        )
        for snapshot, result in zip(measurement.snapshots, measured, strict=True)
    ]


def same_patches(old: TeacherAnswer | None, new: TeacherAnswer) -> bool:
    """Whether two answers put the same text into every CPT patch (then CPT is unchanged)."""
    return old is not None and all(
        patch_text(format, old) == patch_text(format, new) for format in FORMATS
    )


def reask_group(
    workers: Workers,
    teacher: Teacher,
    rows: Sequence[LabeledSnapshot],
    phase1: Phase1Parameters,
    seed: int,
    progress: bool = False,
    monitor: TeacherMonitor | None = None,
) -> tuple[list[LabeledSnapshot], int]:
    """Finished rows whose teacher answer fell back, asked again: each gets the new answer,
    and a new CPT (unless skipped) where the answer changes a patch. Returns the rows and how
    many answers changed."""
    answers = teacher.advise([teacher_request(row) for row in rows], monitor=monitor)
    changed = [
        (row, answer)
        for row, answer in zip(rows, answers, strict=True)
        if not same_patches(row.teacher, answer)
    ]
    cpt_of = {}
    if changed and not phase1.skip_cpt:
        snapshots, new_answers = zip(*changed, strict=True)
        remeasure = Measurement(snapshots, new_answers, phase1, seed, leverage=False, cpt=True)
        for _, measured in run_measurements(workers, iter([remeasure]), "CPT again", 1, progress):
            cpt_of = {row.id: m.cpt for row, m in zip(snapshots, measured, strict=True)}
    updated = [
        row.model_copy(update={"teacher": answer, "cpt": cpt_of.get(row.id, row.cpt)})
        for row, answer in zip(rows, answers, strict=True)
    ]
    return updated, len(changed)


def labeling_parameters(
    phase1: Phase1Parameters, seed: int, student: StudentParameters, teacher: TeacherParameters
) -> dict:
    """Every parameter that shapes a label: a change means the labels must be made again.
    Batch sizes are left out on purpose: labels do not depend on them; `streams` names how
    rollouts draw their randomness, so labels drawn otherwise are made again."""
    return {
        "seed": seed,
        "streams": STREAMS,
        "student": student.model_dump(mode="json", exclude={"batch_size"}),
        "teacher": teacher.model_dump(
            mode="json", include={"backend", "model", "temperature", "max_tokens", "base_url"}
        ),
        "phase1": phase1.model_dump(
            mode="json",
            include={
                "n_rollouts",
                "n_per_condition",
                "max_steps",
                "temperature",
                "U_method",
                "L_upper",
                "skip_leverage",
                "skip_cpt",
            },
        ),
    }


def is_complete(row: LabeledSnapshot, phase1: Phase1Parameters) -> bool:
    """Whether a row holds every label the parameters ask for."""
    return (
        row.teacher is not None
        and row.U is not None
        and (phase1.skip_leverage or row.leverage is not None)
        and (phase1.skip_cpt or row.cpt is not None)
    )
