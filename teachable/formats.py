"""Training data from labeled snapshots: supervision formats as SFT examples, and the split by
task that keeps every test task out of training.

Every format trains the student to answer the expert's action at the snapshot; the formats
differ only in what the prompt carries besides the state. `demo` is the plain state prompt,
`hint` adds the teacher's diagnosis and hint, `contrast` adds why the expert's action beats the
student's. The texts are those of the contextual patch test (`supervision.patch_text`), so a
format means the same thing when it is patched in and when it is trained on. The loss covers
the action tokens only (`training.encode_example`). Evaluation prompts carry no patch.

Splits are by task `(env_id, seed)`, never by snapshot: snapshots of one episode share most of
their world, so a task in both train and test would leak the test into training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from teachable.env import TextWorld
from teachable.labels import LabeledSnapshot
from teachable.quadrants import quadrant_counts
from teachable.rollouts import prompt_for
from teachable.store import read_json, write_json
from teachable.supervision import FORMATS, Format, patch_text
from teachable.training import SFTExample

SPLIT_FILE = "split.json"


def format_patch(row: LabeledSnapshot, format: Format) -> str | None:
    """The text a format adds to the training prompt: none for `demo`, the teacher's texts
    for `hint` and `contrast`."""
    if format not in FORMATS:
        raise ValueError(f"unknown supervision format {format!r}; known: {', '.join(FORMATS)}")
    if format == "demo":
        return None
    if row.teacher is None:
        raise ValueError(f"snapshot {row.id}: the {format} format needs the teacher's answer")
    return patch_text(format, row.teacher)


def sft_example(row: LabeledSnapshot, format: Format, history: int = 0) -> SFTExample:
    """The snapshot's state prompt with the format's text, and the expert's action as target."""
    prompt = prompt_for(TextWorld.restore(row.state), history, format_patch(row, format))
    return SFTExample(prompt, row.expert_action)


def sft_examples(
    rows: Sequence[LabeledSnapshot], format: Format, history: int = 0
) -> list[SFTExample]:
    return [sft_example(row, format, history) for row in rows]


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


def split_by_task(rows: Sequence[LabeledSnapshot], test_fraction: float, seed: int) -> TaskSplit:
    """A seeded draw of `test_fraction` of the tasks (at least one each side when there are
    two or more); every snapshot goes where its task went, in the rows' order."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    tasks = sorted({row.task for row in rows})
    n_test = round(test_fraction * len(tasks))
    if len(tasks) >= 2:
        n_test = min(max(n_test, 1), len(tasks) - 1)
    order = np.random.default_rng(seed).permutation(len(tasks))
    test_tasks = {tasks[index] for index in order[:n_test]}
    return TaskSplit(
        train=[row for row in rows if row.task not in test_tasks],
        test=[row for row in rows if row.task in test_tasks],
    )


def save_split(path: Path, split: TaskSplit, test_fraction: float, seed: int) -> None:
    write_json(path, {"test_fraction": test_fraction, "seed": seed, **split.to_json()})


def load_split(path: Path, rows: Sequence[LabeledSnapshot]) -> TaskSplit:
    """The split saved at `path`, applied to `rows` (the labeled snapshots it was made from)."""
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
