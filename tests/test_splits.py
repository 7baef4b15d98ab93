"""The run's split: three parts by task, no task in two of them, whatever the seeds and shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from teachable.world.splits import PARTS, Split, assign_tasks, split_snapshots


@dataclass(frozen=True)
class Row:
    """What a split reads of a snapshot: its id and its task."""

    id: str
    task: tuple[str, int]


def rows_of(rng: np.random.Generator, n_tasks: int) -> list[Row]:
    """1-6 snapshots on each of `n_tasks` tasks over two levels, in a shuffled order."""
    rows = [
        Row(f"{level}-{seed}-{step}", (f"BabyAI-{level}-v0", seed))
        for index in range(n_tasks)
        for level, seed in [
            (("GoToLocal", "PickupLoc")[index % 2], 1000 * index + int(rng.integers(1000)))
        ]
        for step in range(int(rng.integers(1, 7)))
    ]
    return [rows[i] for i in rng.permutation(len(rows))]


def test_no_task_crosses_parts_for_any_seed_or_shares():
    rng = np.random.default_rng(0)
    for trial in range(300):
        rows = rows_of(rng, int(rng.integers(3, 40)))
        test_share, pool_share = rng.uniform(0, 0.45, size=2)
        split = split_snapshots(rows, test_share, pool_share, trial, ["failure"])
        part_of = split.part_of
        assert set(part_of) == {row.task for row in rows}, "every task has exactly one part"
        for part in PARTS:
            ids = set(split.parts[part].snapshots)
            assert ids == {row.id for row in rows if part_of[row.task] == part}
        listed = [i for part in PARTS for i in split.parts[part].snapshots]
        assert sorted(listed) == sorted(row.id for row in rows)
        assert split.parts["labeled"].tasks, "at least one task is left to label"


def test_the_split_is_a_function_of_the_tasks_and_the_run_seed():
    rows = rows_of(np.random.default_rng(1), 30)
    first = split_snapshots(rows, 0.2, 0.4, 7, ["failure"])
    assert split_snapshots(list(reversed(rows)), 0.2, 0.4, 7, ["failure"]).part_of == first.part_of
    assert split_snapshots(rows, 0.2, 0.4, 8, ["failure"]).part_of != first.part_of
    counts = first.counts()
    assert (counts["test"]["tasks"], counts["pool"]["tasks"], counts["labeled"]["tasks"]) == (
        6,
        12,
        12,
    )
    assert first.parts["test"].snapshots == [r.id for r in rows if first.part_of[r.task] == "test"]


def test_the_split_does_not_repeat_the_permutation_of_a_plain_run_seed_draw():
    """Phase 4's old split drew `assign_tasks` with a plain seed; the run's split draws from
    (run seed, its own stream), so the two do not put the same tasks first."""
    tasks = sorted({row.task for row in rows_of(np.random.default_rng(2), 40)})
    rows = [Row(f"{env}:{seed}", (env, seed)) for env, seed in tasks]
    split = split_snapshots(rows, 0.25, 0.0, 0, ["failure"])
    plain = assign_tasks(tasks, {"test": 0.25}, 0)
    assert split.tasks("test") != {task for task, part in plain.items() if part == "test"}


def test_a_zero_share_leaves_its_part_empty():
    rows = rows_of(np.random.default_rng(3), 10)
    split = split_snapshots(rows, 0.3, 0.0, 0, ["failure"])
    assert split.parts["pool"].tasks == [] and split.parts["pool"].snapshots == []
    with pytest.raises(ValueError, match="leave tasks to label"):
        split_snapshots(rows, 0.5, 0.5, 0, ["failure"])


def test_the_saved_split_reads_back_and_finds_its_rows(tmp_path):
    rows = rows_of(np.random.default_rng(4), 12)
    split = split_snapshots(rows, 0.2, 0.4, 3, ["failure", "expert"])
    split.save(tmp_path / "split.json")
    again = Split.load(tmp_path / "split.json")
    assert again == split and again.outside.keys() == {"heldout", "retention"}
    pool = again.rows("pool", rows)
    assert [row.id for row in pool] == split.parts["pool"].snapshots
    with pytest.raises(ValueError, match="pool snapshot.*missing"):
        again.rows("pool", [row for row in rows if row.id != pool[0].id])
    with pytest.raises(ValueError, match="lies in labeled of the split, not in its pool part"):
        again.check_within("pool", again.rows("labeled", rows)[:1], "phase 5")
    with pytest.raises(FileNotFoundError, match="phase 1 makes"):
        Split.load(tmp_path / "missing.json")


def test_a_split_that_lists_a_task_twice_is_refused():
    rows = rows_of(np.random.default_rng(5), 6)
    data = split_snapshots(rows, 0.2, 0.2, 0, ["failure"]).model_dump(mode="json")
    data["parts"]["pool"]["tasks"].append(data["parts"]["labeled"]["tasks"][0])
    with pytest.raises(ValueError, match="tasks in two parts"):
        Split.model_validate(data)
