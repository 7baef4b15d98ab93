"""The stepwise labeling of the `label STEP` command: the steps, what each needs a row to hold
(rows lacking it are refused with `MissingField` before any work), what each writes to its log
under `steps/`, and the rows with every label those logs hold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from teachable.models.conditions import teacher_request
from teachable.models.labeling import measure, snapshot_uncertainty
from teachable.models.student import Student
from teachable.models.teachers import Teacher, TeacherMonitor
from teachable.parameters import Phase1Parameters
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import Phase1Layout
from teachable.records.store import read_jsonl

Step = Literal["hints", "uncertainty", "leverage", "cpt"]


STEPS: tuple[Step, ...] = ("hints", "uncertainty", "leverage", "cpt")


STEP_FIELDS: dict[Step, tuple[str, ...]] = {
    "hints": ("teacher",),
    "uncertainty": ("U", "U_method"),
    "leverage": ("leverage",),
    "cpt": ("cpt",),
}


class MissingField(ValueError):
    """A row lacks a field that a labeling step needs; the message names the row and field."""


NEEDED_BY = {"leverage": "leverage", "U": "uncertainty", "teacher": "hints"}


def missing_fields(row: LabeledSnapshot, step: str, phase1: Phase1Parameters) -> list[str]:
    """The fields `row` lacks that the labeling step `step` needs."""
    if step == "uncertainty":
        return [
            f"student_distribution.{action}"
            for action in row.valid_actions
            if action not in row.student_distribution
        ]
    if step == "cpt":
        return [] if row.teacher is not None else ["teacher"]
    if step in ("quadrants", "plots"):
        needed = {"U": row.U}
        if not phase1.skip_leverage:
            needed["leverage"] = row.leverage
        return [name for name, value in needed.items() if value is None]
    return []


def require_fields(
    rows: Sequence[LabeledSnapshot], step: str, phase1: Phase1Parameters, source: object = ""
) -> None:
    """Refuse, before any work, rows that lack a field `step` needs: `MissingField` names the
    first such row, its field, how many rows lack one, and the step that makes it."""
    lacking = [(row.id, field) for row in rows for field in missing_fields(row, step, phase1)]
    if not lacking:
        return
    row_id, field = lacking[0]
    maker = NEEDED_BY.get(field)
    remedy = f"; run `label {maker}` first" if maker else ""
    where = f"{source}: " if source else ""
    raise MissingField(
        f"{where}row {row_id} lacks the field {field}, which `label {step}` needs "
        f"({len({row for row, _ in lacking})} of {len(rows)} rows lack a needed field){remedy}"
    )


def merged_rows(rows: Sequence[LabeledSnapshot], out: Phase1Layout) -> list[LabeledSnapshot]:
    """`rows` with every label the step logs of `out` hold for them."""
    found: dict[str, dict] = {}
    for step in STEPS:
        for entry in read_jsonl(out.step_log(step)):
            found.setdefault(entry["id"], {}).update(
                {name: entry[name] for name in STEP_FIELDS[step]}
            )
    return [
        LabeledSnapshot.model_validate({**row.model_dump(mode="json"), **found.get(row.id, {})})
        for row in rows
    ]


def step_labels(
    step: Step,
    group: Sequence[LabeledSnapshot],
    phase1: Phase1Parameters,
    seed: int,
    student: Student | None,
    teacher: Teacher | None,
    progress: bool,
    monitor: TeacherMonitor | None = None,
) -> list[dict]:
    """One step's fields for each row of a group."""
    if step == "hints":
        answers = teacher.advise([teacher_request(row) for row in group], monitor=monitor)
        return [{"teacher": answer.model_dump(mode="json")} for answer in answers]
    if step == "uncertainty":
        method = phase1.U_method
        return [{"U": snapshot_uncertainty(row, method), "U_method": method} for row in group]
    answers = [row.teacher for row in group]
    measured = measure(
        student,
        group,
        answers,
        phase1,
        seed,
        leverage=step == "leverage",
        cpt=step == "cpt",
        progress=progress,
    )
    key = "leverage" if step == "leverage" else "cpt"
    return [{key: getattr(m, key).model_dump(mode="json")} for m in measured]
