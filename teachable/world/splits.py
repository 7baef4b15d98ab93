"""Splits of labeled snapshots by task: no task `(env_id, seed)` lies on two sides.

Snapshots of one episode share most of their world, so a task in both train and test would leak
the test into training. `assign_tasks` is the one rule every split follows (Phase 2's train and
test, Phase 4's train, validation and test): a seeded permutation of the sorted tasks, each
held-out part taking its rounded share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from teachable.records.labeled import LabeledSnapshot
from teachable.records.quadrants import quadrant_counts
from teachable.records.store import read_json, write_json

Task = tuple[str, int]


@dataclass(frozen=True)
class TaskSplit:
    """Labeled snapshots split into train and test so that no task is in both."""

    train: list[LabeledSnapshot]
    test: list[LabeledSnapshot]

    @property
    def train_tasks(self) -> list[Task]:
        return sorted({row.task for row in self.train})

    @property
    def test_tasks(self) -> list[Task]:
        return sorted({row.task for row in self.test})

    def to_json(self) -> dict:
        """The `split.json` record: tasks, snapshot ids and quadrant counts of each side."""
        return {
            side: {
                "tasks": [list(task) for task in tasks],
                "snapshots": [row.id for row in rows],
                "quadrant_counts": quadrant_counts(row.quadrant for row in rows),
            }
            for side, rows, tasks in (
                ("train", self.train, self.train_tasks),
                ("test", self.test, self.test_tasks),
            )
        }


def assign_tasks(
    tasks: Sequence[Task], held_out: Mapping[str, float], seed: int, rest: str = "train"
) -> dict[Task, str]:
    """Each task's part: a seeded permutation of `tasks` gives each held-out part, in order,
    `round(fraction * n)` tasks (at least one while two or more tasks are left for it and the
    rest), and every other task goes to `rest`."""
    order = np.random.default_rng(seed).permutation(len(tasks))
    part_of: dict[Task, str] = {}
    start = 0
    for part, fraction in held_out.items():
        room = len(tasks) - start - 1  # at least one task stays for `rest`
        size = min(max(round(fraction * len(tasks)), 1), room) if room >= 1 else 0
        for index in order[start : start + size]:
            part_of[tasks[index]] = part
        start += size
    for index in order[start:]:
        part_of[tasks[index]] = rest
    return part_of


def split_by_task(rows: Sequence[LabeledSnapshot], test_fraction: float, seed: int) -> TaskSplit:
    """A seeded draw of `test_fraction` of the tasks (at least one each side when there are
    two or more); every snapshot goes where its task went, in the rows' order."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    part_of = assign_tasks(sorted({row.task for row in rows}), {"test": test_fraction}, seed)
    test_tasks = {task for task, part in part_of.items() if part == "test"}
    return TaskSplit(
        train=[row for row in rows if row.task not in test_tasks],
        test=[row for row in rows if row.task in test_tasks],
    )


def save_split(path: Path, split: TaskSplit, test_fraction: float, seed: int) -> None:
    write_json(path, {"test_fraction": test_fraction, "seed": seed, **split.to_json()})


def load_split(path: Path, rows: Sequence[LabeledSnapshot]) -> TaskSplit:
    """The split saved at `path`, applied to `rows` (the labeled snapshots it was made from)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: run phase 2 first")
    saved = read_json(path)
    by_id = {row.id: row for row in rows}
    missing = [i for side in ("train", "test") for i in saved[side]["snapshots"] if i not in by_id]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} snapshot id(s) of the split are not among the labeled rows "
            f"(first: {missing[0]}); the labels changed since the split was made"
        )
    return TaskSplit(
        train=[by_id[i] for i in saved["train"]["snapshots"]],
        test=[by_id[i] for i in saved["test"]["snapshots"]],
    )
