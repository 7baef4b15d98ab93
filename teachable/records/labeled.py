"""Labeled snapshots: a snapshot with its Phase 1 labels, read and written here.

The labels are the teacher's answer, U (how unsure the student is), leverage (how much forcing
the expert's action changes the outcome) and the contextual patch test (how much a teacher's
patch in the prompt changes it), and the quadrant of U and L. Phase 1 writes both labeled files;
every later phase reads them through `load_labeled`, in the chosen (else automatic) quadrants.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from teachable.records.layout import Phase1Layout
from teachable.records.quadrants import load_thresholds, quadrant_of
from teachable.records.snapshot import Snapshot, SnapshotError, row_error
from teachable.records.store import read_json, read_jsonl, write_json, write_jsonl
from teachable.vocabulary import Format, Quadrant, UMethod


def assign_quadrants(
    rows: Sequence[LabeledSnapshot], u_threshold: float, l_threshold: float
) -> list[LabeledSnapshot]:
    """Rows with their quadrant for the thresholds (None where U or L is missing); a value on
    a threshold counts as high."""
    return [
        row.model_copy(
            update={
                "quadrant": None
                if row.U is None or row.L is None
                else quadrant_of(row.U, row.L, u_threshold, l_threshold)
            }
        )
        for row in rows
    ]


class TeacherAnswer(BaseModel):
    """A teacher's advice on one snapshot, with where it came from and what it cost."""

    suggested_action: str
    diagnosis: str
    hint: str
    contrast: str
    valid: bool = True
    backend: str
    model: str | None = None
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    problem: str | None = None  # why `valid` is False
    names_action: list[str] = []  # actions its texts named where they may not (flagged)


class TeacherHealth(BaseModel):
    """How many of a phase's teacher answers were invalid or failed (the bot's action stood
    in for each), against the limit `teacher.max_invalid_fraction`, with the first errors."""

    what: str
    backend: str
    model: str | None = None
    server: str = ""  # where a remote teacher was asked; empty for the bot
    answers: int
    invalid: int
    share: float
    max_invalid_fraction: float
    first_errors: list[str] = []
    requests: int = 0
    failed_requests: int = 0
    cache_hits: int = 0

    def line(self) -> str:
        """One line for the end of a run: who answered, and the share that was invalid."""
        who = " ".join(part for part in (self.backend, self.model) if part)
        return (
            f"{self.what}: {self.invalid} of {self.answers} teacher answers invalid or failed "
            f"({self.share:.1%}; teacher.max_invalid_fraction {self.max_invalid_fraction:g}) "
            f"from {who}" + (f" at {self.server}" if self.server else "")
        )


def save_teacher_health(path: Path, health: TeacherHealth) -> None:
    write_json(path, health.model_dump(mode="json"))


def load_teacher_health(path: Path) -> TeacherHealth:
    return TeacherHealth.model_validate(read_json(path))


class Leverage(BaseModel):
    """`L_local = mean_i(forced_i - base_i)` over `n` paired rollouts (rollout i of both on one
    random stream), so `L_local = p_forced - p_student`; `se` is its standard error (None where
    not measured from rollouts). `L_upper` is the bot's own success from the snapshot (0 or 1):
    whether the task can still be finished at all."""

    model_config = ConfigDict(extra="forbid")

    L_local: float
    p_student: float
    p_forced: float
    n: int
    se: float | None = None
    L_upper: float | None = None


class CPT(BaseModel):
    """Success rate per patch condition over `n_per_condition` paired rollouts (rollout i of
    every condition on one random stream; `base` is the student on its own, as in leverage);
    `ELP[f] = mean_i(f_i - base_i)`; `route_net = argmax_f mean_i(f_i - placebo_i)`, and
    `ELP_net = mean_i(r_i - placebo_i)` with `r_i` the format best on the other half of the
    streams than i's (cross-fitted, so unbiased by the choice); `ELP_se` and `ELP_net_se` are
    their standard errors (None where not measured from rollouts)."""

    model_config = ConfigDict(extra="forbid")

    p: dict[str, float]
    ELP: dict[Format, float]
    ELP_net: float
    route_net: Format
    n_per_condition: int
    ELP_se: dict[Format, float] | None = None
    ELP_net_se: float | None = None


class LabeledSnapshot(Snapshot):
    """A snapshot with its Phase 1 labels; a label not (yet) measured is None."""

    U: float | None = None
    U_method: UMethod | None = None
    leverage: Leverage | None = None
    cpt: CPT | None = None
    teacher: TeacherAnswer | None = None
    quadrant: Quadrant | None = None

    @property
    def L(self) -> float | None:
        return None if self.leverage is None else self.leverage.L_local

    @classmethod
    def of(cls, snapshot: Snapshot) -> LabeledSnapshot:
        """The snapshot's own fields (labels of a labeled one are kept)."""
        return cls.model_validate(snapshot.model_dump())


def label_frame(rows: Sequence[LabeledSnapshot]) -> pd.DataFrame:
    """One line per row: id, level, source, U, L, ELP_net, route_net and quadrant."""
    columns = ["id", "level", "source", "U", "L", "ELP_net", "route_net", "quadrant"]
    return pd.DataFrame(
        [
            {
                "id": row.id,
                "level": row.level,
                "source": row.source,
                "U": row.U,
                "L": row.L,
                "ELP_net": None if row.cpt is None else row.cpt.ELP_net,
                "route_net": None if row.cpt is None else row.cpt.route_net,
                "quadrant": row.quadrant,
            }
            for row in rows
        ],
        columns=columns,
    ).astype({"U": float, "L": float})


def save_labeled(out: Phase1Layout, rows: Sequence[LabeledSnapshot]) -> None:
    """Both labeled files with exactly `rows`, each replaced atomically."""
    dumped = [row.model_dump(mode="json") for row in rows]
    write_jsonl(out.labeled_jsonl, dumped)
    write_json(out.labeled_json, dumped)


def load_rows(path: Path) -> list[LabeledSnapshot]:
    """Snapshots or labeled rows from a JSON list or a JSONL log, checked row by row, with
    distinct ids (`world.replay` also replays them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = read_jsonl(path) if path.suffix == ".jsonl" else read_json(path)
    if not isinstance(data, list):
        raise SnapshotError(f"{path}: expected a list of snapshots")
    rows = []
    for index, row in enumerate(data):
        try:
            rows.append(LabeledSnapshot.model_validate(row))
        except ValidationError as error:
            raise row_error(path, index, row, error) from None
    _check_distinct(rows, path)
    return rows


def _check_distinct(snapshots: Sequence[Snapshot], where: Path | str) -> None:
    seen: set[str] = set()
    for snapshot in snapshots:
        if snapshot.id in seen:
            raise SnapshotError(f"{where}: snapshot id {snapshot.id} appears twice")
        seen.add(snapshot.id)


def load_labeled(
    phase1: Phase1Layout, part: Literal["labeled", "test"] = "labeled"
) -> list[LabeledSnapshot]:
    """The labeled snapshots (or, with `part="test"`, the split's test snapshots, which carry
    U and leverage only), in the quadrants of the chosen (else automatic) thresholds."""
    rows = load_rows(phase1.labeled_json if part == "labeled" else phase1.test_labels)
    thresholds = load_thresholds(phase1)
    if thresholds.L is None:
        return rows
    return assign_quadrants(rows, thresholds.U, thresholds.L)
