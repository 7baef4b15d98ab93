"""Phase 2: the training matrix. One LoRA adapter per quadrant and supervision format, and two
baselines, all with identical hyperparameters.

The labeled snapshots are split by task first (`split.json`); only train snapshots are trained
on. `<quadrant>_<format>` trains on the quadrant's train snapshots in that format;
`baseline_all_demo` on every train snapshot; `baseline_random_demo` on a seeded random subset
of them as large as the median quadrant. A run with fewer than `phase2.min_train` snapshots is
skipped with its reason. Each run is an independent unit (`train_run`): its adapter goes to
`<run_id>/` and its entry to `training_summary.json` as soon as it finishes, and a rerun keeps
every run whose adapter and entry match what it would train now.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from teachable.models.lora import train_lora
from teachable.models.student import Student
from teachable.models.supervision import sft_examples
from teachable.parameters import LoraParameters, Phase2Parameters
from teachable.records.labeled import FORMATS, Format, LabeledSnapshot
from teachable.records.layout import Phase2Layout, TrainingLayout
from teachable.records.quadrants import QUADRANTS
from teachable.records.training_summary import Cell, RunEntry, TrainingSummary
from teachable.world.splits import TaskSplit, save_split, split_by_task


@dataclass(frozen=True)
class MatrixRun:
    """One cell of the matrix: which train snapshots, in which format."""

    id: str
    quadrant: Cell
    format: Format
    rows: tuple[LabeledSnapshot, ...]


def plan_matrix(train: Sequence[LabeledSnapshot], seed: int) -> list[MatrixRun]:
    """The 14 runs, in a fixed order: quadrants x formats, then the two baselines."""
    by_quadrant = {q: tuple(row for row in train if row.quadrant == q) for q in QUADRANTS}
    runs = [
        MatrixRun(f"{quadrant}_{format}", quadrant, format, rows)
        for quadrant, rows in by_quadrant.items()
        for format in FORMATS
    ]
    size = min(round(statistics.median(len(rows) for rows in by_quadrant.values())), len(train))
    picked = (
        sorted(np.random.default_rng(seed).choice(len(train), size, replace=False)) if size else []
    )
    return [
        *runs,
        MatrixRun("baseline_all_demo", "all", "demo", tuple(train)),
        MatrixRun("baseline_random_demo", "random", "demo", tuple(train[i] for i in picked)),
    ]


def run_key(run: MatrixRun, lora: LoraParameters, student: Student) -> str:
    """Everything that shapes a run's adapter, hashed: an entry with another key is retrained."""
    shaping = {
        "format": run.format,
        "snapshots": [row.id for row in run.rows],
        "lora": lora.model_dump(mode="json"),
        "student": student.params.model_dump(mode="json", exclude={"batch_size"}),
    }
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def skip_reason(run: MatrixRun, min_train: int) -> str | None:
    if len(run.rows) < min_train:
        return f"{len(run.rows)} train snapshot(s), fewer than phase2.min_train={min_train}"
    return None


def train_run(
    student: Student,
    run: MatrixRun,
    lora: LoraParameters,
    out: TrainingLayout,
    key: str,
    group: str,
) -> RunEntry:
    """Train one run's adapter with `lora` into its folder of `out` and describe it."""
    examples = sft_examples(run.rows, run.format, student.params.history)
    result = train_lora(student, examples, lora, out.adapter(run.id))
    log_to_wandb(run, result.losses, lora, group)
    return RunEntry(
        id=run.id,
        quadrant=run.quadrant,
        format=run.format,
        n_train=len(run.rows),
        status="trained",
        adapter=run.id,
        losses=[round(loss, 6) for loss in result.losses],
        seconds=round(result.seconds, 2),
        steps=result.steps,
        snapshots=[row.id for row in run.rows],
        key=key,
    )


def log_to_wandb(run: MatrixRun, losses: list[float], lora: LoraParameters, group: str) -> None:
    """Send the run's loss curve to Weights & Biases when `WANDB_PROJECT` is set and the
    optional `wandb` package is installed; nothing depends on it."""
    project = os.environ.get("WANDB_PROJECT")
    if not project or importlib.util.find_spec("wandb") is None:
        return
    import wandb

    config = {"format": run.format, "n_train": len(run.rows), **lora.model_dump(mode="json")}
    tracked = wandb.init(project=project, group=group, name=run.id, config=config, reinit=True)
    for step, loss in enumerate(losses):
        tracked.log({"loss": loss}, step=step)
    tracked.finish()


def is_finished(entry: RunEntry | None, key: str, out: TrainingLayout) -> bool:
    """Whether an earlier entry is this very run, with its adapter in place."""
    return (
        entry is not None
        and entry.status == "trained"
        and entry.key == key
        and (out.adapter(entry.adapter) / "adapter_config.json").is_file()
    )


def save_summary(
    out: TrainingLayout, lora: LoraParameters, split: Path, entries: Sequence[RunEntry]
) -> None:
    """Write the training summary of `out`: the runs, their hyperparameters and the split."""
    summary = TrainingSummary(
        lora=lora, split=os.path.relpath(split, out.folder), runs=list(entries)
    )
    summary.save(out.training_summary)


@dataclass
class MatrixReport:
    """What `train_matrix` did: the split, one entry per run and how many it trained now."""

    split: TaskSplit
    entries: list[RunEntry]
    newly_trained: int


def train_matrix(
    rows: Sequence[LabeledSnapshot],
    phase2: Phase2Parameters,
    lora: LoraParameters,
    seed: int,
    student: Student,
    out: Phase2Layout,
    run_name: str,
    progress: bool = True,
) -> MatrixReport:
    """All of Phase 2 for the labeled `rows`, resumable, into `out`: the shared `lora` settings
    under Phase 2's overrides, the split and the random baseline drawn with `seed`, and the
    losses logged under `run_name` where Weights & Biases is set up."""
    split = split_by_task(rows, phase2.test_fraction, seed)
    save_split(out.split, split, phase2.test_fraction, seed)
    runs = plan_matrix(split.train, seed)
    earlier = TrainingSummary.entries_in(out.training_summary)
    lora = phase2.over(lora)
    entries: dict[str, RunEntry] = {}
    trained = 0
    for run in tqdm(runs, desc="training matrix", unit="run", disable=not progress):
        key = run_key(run, lora, student)
        reason = skip_reason(run, phase2.min_train)
        if reason is not None:
            entries[run.id] = RunEntry(
                id=run.id,
                quadrant=run.quadrant,
                format=run.format,
                n_train=len(run.rows),
                status="skipped",
                reason=reason,
                snapshots=[row.id for row in run.rows],
            )
        elif is_finished(earlier.get(run.id), key, out):
            entries[run.id] = earlier[run.id]
        else:
            entries[run.id] = train_run(student, run, lora, out, key, run_name)
            trained += 1
        known = earlier | entries  # earlier entries of runs not reached yet survive a kill now
        save_summary(out, lora, out.split, [known[r.id] for r in runs if r.id in known])
    return MatrixReport(split, [*entries.values()], trained)
