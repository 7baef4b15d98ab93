"""Splits by task: no task `(env_id, seed)` lies in two parts.

Snapshots of one episode share most of their world, so a task in two parts would leak one part
into the other. `assign_tasks` is the one rule every split follows: a seeded permutation of the
sorted tasks, each held-out part taking its rounded share of them.

The run's split (`Split`, saved as `split.json`) is made once, by Phase 1, from the Phase 0
snapshots, and every later phase reads it; none splits again:

- `labeled`: Phase 1 labels them; Phase 1B, Phase 2 and the predictor train on them;
- `pool`: left unlabeled; Phase 5 selects from them;
- `test`: held-out snapshots Phases 3 and 5 play from (Phase 1 measures only their U and
  leverage, which place them in a quadrant).

The held-out task starts and the retention tasks come from purposes of their own
(`world.tasks`), so no snapshot comes from them; `OUTSIDE` names them in the record, and Phase 3
checks that none of its tasks is a task of the split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from teachable.records.store import read_json, write_json

Task = tuple[str, int]


Part = Literal["labeled", "pool", "test"]


PARTS: tuple[Part, ...] = ("labeled", "pool", "test")


SPLIT_STREAM = 0x5E11  # the split's permutation is drawn from (run seed, SPLIT_STREAM)


OUTSIDE = {
    "heldout": "Phase 3's held-out task starts: their own task purpose, no snapshot's task",
    "retention": "Phase 3's retention tasks: their own task purpose, no snapshot's task",
}


class HasTask(Protocol):
    """What a split reads of a snapshot: its id and its task."""

    @property
    def id(self) -> str: ...

    @property
    def task(self) -> Task: ...


Row = TypeVar("Row", bound=HasTask)


def assign_tasks(
    tasks: Sequence[Task],
    held_out: Mapping[str, float],
    seed: int | tuple[int, ...],
    rest: str = "train",
) -> dict[Task, str]:
    """Each task's part: a seeded permutation of `tasks` gives each held-out part, in order,
    `round(share * n)` tasks (at least one for a positive share while a task is left for `rest`
    too; none for a share of 0), and every other task goes to `rest`."""
    order = np.random.default_rng(seed).permutation(len(tasks))
    part_of: dict[Task, str] = {}
    start = 0
    for part, share in held_out.items():
        room = len(tasks) - start - 1  # at least one task stays for `rest`
        size = min(max(round(share * len(tasks)), 1), room) if share > 0 and room >= 1 else 0
        for index in order[start : start + size]:
            part_of[tasks[index]] = part
        start += size
    for index in order[start:]:
        part_of[tasks[index]] = rest
    return part_of


class SplitPart(BaseModel):
    """One part of the split: its tasks and the ids of its snapshots, in Phase 0's order."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[Task]
    snapshots: list[str]


class Split(BaseModel):
    """`split.json`: the Phase 0 snapshots of `sources` in three parts by task, drawn with the
    run `seed` at the given shares of tasks, and the task purposes no snapshot comes from."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    test_share: float = Field(ge=0.0, lt=1.0)
    pool_share: float = Field(ge=0.0, lt=1.0)
    sources: list[str]
    parts: dict[Part, SplitPart]
    outside: dict[str, str] = Field(default_factory=lambda: dict(OUTSIDE))

    @model_validator(mode="after")
    def _disjoint(self) -> Split:
        missing = [part for part in PARTS if part not in self.parts]
        if missing:
            raise ValueError(f"the split lacks the part(s) {missing}")
        tasks = [tuple(task) for part in self.parts.values() for task in part.tasks]
        ids = [i for part in self.parts.values() for i in part.snapshots]
        for what, listed in (("tasks", tasks), ("snapshots", ids)):
            if len(set(listed)) < len(listed):
                raise ValueError(f"the split lists one of its {what} in two parts")
        return self

    @property
    def part_of(self) -> dict[Task, Part]:
        """The part of every task of the split."""
        return {tuple(task): name for name, part in self.parts.items() for task in part.tasks}

    def tasks(self, *parts: Part) -> set[Task]:
        """The tasks of the named parts (all three when none is named)."""
        return {tuple(task) for name in parts or PARTS for task in self.parts[name].tasks}

    def rows(self, part: Part, snapshots: Sequence[Row]) -> list[Row]:
        """The part's snapshots among `snapshots` (those the split was made from), in their
        order; a snapshot of the part that is not among them is an error."""
        wanted = self.parts[part].snapshots
        chosen = set(wanted)
        found = [row for row in snapshots if row.id in chosen]
        if len(found) < len(wanted):
            known = {row.id for row in snapshots}
            lost = next(i for i in wanted if i not in known)
            raise ValueError(
                f"{len(wanted) - len(found)} {part} snapshot(s) of the split are missing "
                f"(first: {lost}); the Phase 0 snapshots changed since the split was made"
            )
        return found

    def check_within(self, part: Part, rows: Sequence[HasTask], what: str) -> None:
        """Refuse rows of a task outside `part`: they would leak another part into it."""
        part_of = self.part_of
        for row in rows:
            if part_of.get(row.task) != part:
                where = part_of.get(row.task, "no part")
                raise ValueError(
                    f"{what}: snapshot {row.id} of task {row.task} lies in {where} of the "
                    f"split, not in its {part} part"
                )

    def counts(self) -> dict[str, dict[str, int]]:
        """Tasks and snapshots per part."""
        return {
            name: {"tasks": len(part.tasks), "snapshots": len(part.snapshots)}
            for name, part in self.parts.items()
        }

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> Split:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} is missing: phase 1 makes the run's split")
        return cls.model_validate(read_json(path))


def split_snapshots(
    snapshots: Sequence[HasTask],
    test_share: float,
    pool_share: float,
    seed: int,
    sources: Sequence[str],
) -> Split:
    """The run's split of `snapshots` by task: a permutation of their sorted tasks drawn from
    (`seed`, `SPLIT_STREAM`) gives `test_share` of the tasks to `test`, then `pool_share` to
    `pool`, and the rest (at least one task) to `labeled`."""
    if test_share + pool_share >= 1.0:
        raise ValueError("test_share + pool_share must leave tasks to label")
    tasks = sorted({row.task for row in snapshots})
    shares = {"test": test_share, "pool": pool_share}
    part_of = assign_tasks(tasks, shares, (seed, SPLIT_STREAM), rest="labeled")
    parts = {
        part: SplitPart(
            tasks=[task for task in tasks if part_of[task] == part],
            snapshots=[row.id for row in snapshots if part_of[row.task] == part],
        )
        for part in PARTS
    }
    return Split(
        seed=seed,
        test_share=test_share,
        pool_share=pool_share,
        sources=list(sources),
        parts=parts,
    )
