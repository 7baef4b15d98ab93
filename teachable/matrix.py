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
from typing import Literal

import altair as alt
import numpy as np
import pandas as pd
from pydantic import BaseModel
from tqdm.auto import tqdm

from teachable.formats import SPLIT_FILE, TaskSplit, save_split, sft_examples, split_by_task
from teachable.labels import LabeledSnapshot
from teachable.parameters import LoraParameters, Parameters, SelectionMethod
from teachable.quadrants import QUADRANTS, Quadrant
from teachable.store import read_json, write_json
from teachable.student import Student
from teachable.supervision import FORMATS, Format
from teachable.training import train_lora
from teachable.warmup import load_prepared_student

SUMMARY_FILE = "training_summary.json"
# a quadrant, the train set a baseline draws on, or the method a Phase 5 run was selected by
Cell = Quadrant | Literal["all", "random"] | SelectionMethod


@dataclass(frozen=True)
class MatrixRun:
    """One cell of the matrix: which train snapshots, in which format."""

    id: str
    quadrant: Cell
    format: Format
    rows: tuple[LabeledSnapshot, ...]


class RunEntry(BaseModel):
    """A run's line in `training_summary.json`; `adapter` is relative to the phase2 folder."""

    id: str
    quadrant: Cell
    format: Format
    n_train: int
    status: Literal["trained", "skipped"]
    reason: str | None = None
    adapter: str | None = None
    losses: list[float] = []
    seconds: float | None = None
    steps: int | None = None
    snapshots: list[str] = []
    key: str | None = None


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


def matrix_lora(params: Parameters) -> LoraParameters:
    """The `lora` hyperparameters with every value `phase2` sets in their place."""
    overrides = params.phase2.model_dump(
        include={"steps", "learning_rate", "batch_size", "gradient_accumulation_steps"},
        exclude_none=True,
    )
    return params.lora.model_copy(update=overrides)


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
    params: Parameters,
    out_dir: Path,
    key: str,
) -> RunEntry:
    """Train one run's adapter with `lora` into `out_dir/<run id>/` and describe it."""
    examples = sft_examples(run.rows, run.format, params.student.history)
    result = train_lora(student, examples, lora, out_dir / run.id)
    log_to_wandb(run, result.losses, lora, params)
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


def log_to_wandb(
    run: MatrixRun, losses: list[float], lora: LoraParameters, params: Parameters
) -> None:
    """Send the run's loss curve to Weights & Biases when `WANDB_PROJECT` is set and the
    optional `wandb` package is installed; nothing depends on it."""
    project = os.environ.get("WANDB_PROJECT")
    if not project or importlib.util.find_spec("wandb") is None:
        return
    import wandb

    config = {"format": run.format, "n_train": len(run.rows), **lora.model_dump(mode="json")}
    tracked = wandb.init(
        project=project, group=params.run_name, name=run.id, config=config, reinit=True
    )
    for step, loss in enumerate(losses):
        tracked.log({"loss": loss}, step=step)
    tracked.finish()


def finished_entries(out_dir: Path) -> dict[str, RunEntry]:
    """The entries of an earlier `training_summary.json`, by run id."""
    path = out_dir / SUMMARY_FILE
    if not path.is_file():
        return {}
    return {entry["id"]: RunEntry.model_validate(entry) for entry in read_json(path)["runs"]}


def is_finished(entry: RunEntry | None, key: str, out_dir: Path) -> bool:
    """Whether an earlier entry is this very run, with its adapter in place."""
    return (
        entry is not None
        and entry.status == "trained"
        and entry.key == key
        and (out_dir / entry.adapter / "adapter_config.json").is_file()
    )


def save_summary(
    out_dir: Path,
    params: Parameters,
    entries: Sequence[RunEntry],
    lora: LoraParameters | None = None,
    split: str = SPLIT_FILE,
) -> None:
    """Write `training_summary.json`: the runs, their hyperparameters (Phase 2's unless `lora`
    is given) and the split file, relative to `out_dir`."""
    write_json(
        out_dir / SUMMARY_FILE,
        {
            "lora": (lora or matrix_lora(params)).model_dump(mode="json"),
            "split": split,
            "runs": [entry.model_dump(mode="json") for entry in entries],
        },
    )


@dataclass
class MatrixReport:
    """What `train_matrix` did: the split, one entry per run and how many it trained now."""

    split: TaskSplit
    entries: list[RunEntry]
    newly_trained: int


def train_matrix(
    params: Parameters,
    rows: Sequence[LabeledSnapshot],
    out_dir: Path,
    student: Student | None = None,
    progress: bool = True,
) -> MatrixReport:
    """All of Phase 2 for the labeled `rows`, resumable, into `out_dir`. `student` defaults
    to the one Phase 0 prepared."""
    out_dir = Path(out_dir)
    phase2 = params.phase2
    split = split_by_task(rows, phase2.test_fraction, params.run.seed)
    save_split(out_dir / SPLIT_FILE, split, phase2.test_fraction, params.run.seed)
    runs = plan_matrix(split.train, params.run.seed)
    student = student if student is not None else load_prepared_student(params)
    earlier = finished_entries(out_dir)
    lora = matrix_lora(params)
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
        elif is_finished(earlier.get(run.id), key, out_dir):
            entries[run.id] = earlier[run.id]
        else:
            entries[run.id] = train_run(student, run, lora, params, out_dir, key)
            trained += 1
        known = earlier | entries  # earlier entries of runs not reached yet survive a kill now
        save_summary(out_dir, params, [known[r.id] for r in runs if r.id in known])
    return MatrixReport(split, [*entries.values()], trained)


# --- tables and charts ---------------------------------------------------------------------------


def summary_frame(entries: Sequence[RunEntry]) -> pd.DataFrame:
    """One line per run: id, cell, format, status, train size, steps, seconds, last loss."""
    return pd.DataFrame(
        [
            {
                "id": e.id,
                "quadrant": e.quadrant,
                "format": e.format,
                "status": e.status,
                "n_train": e.n_train,
                "steps": e.steps,
                "seconds": e.seconds,
                "first_loss": e.losses[0] if e.losses else None,
                "last_loss": e.losses[-1] if e.losses else None,
                "reason": e.reason,
            }
            for e in entries
        ]
    )


def train_size_table(entries: Sequence[RunEntry]) -> pd.DataFrame:
    """Train snapshots per cell: quadrants (and baselines) as rows, formats as columns."""
    frame = summary_frame(entries)
    cells = [*QUADRANTS, "all", "random"]
    table = frame.pivot_table(index="quadrant", columns="format", values="n_train", aggfunc="sum")
    return table.reindex(index=[c for c in cells if c in table.index], columns=list(FORMATS))


def train_size_chart(entries: Sequence[RunEntry]) -> alt.LayerChart:
    """The train-set size of every cell, skipped runs greyed out."""
    frame = summary_frame(entries)
    base = alt.Chart(frame).encode(
        x=alt.X("format:N", sort=list(FORMATS), axis=alt.Axis(labelAngle=0), title=None),
        y=alt.Y("quadrant:N", sort=[*QUADRANTS, "all", "random"], title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.condition(
            alt.datum.status == "trained",
            alt.Color("n_train:Q", scale=alt.Scale(scheme="blues"), title="train snapshots"),
            alt.value("#e5e7eb"),
        )
    )
    labels = base.mark_text(fontSize=13).encode(text="n_train:Q")
    return alt.layer(cells, labels).properties(
        width=240, height=200, title="Train snapshots per cell (grey: skipped)"
    )


def loss_frame(entries: Sequence[RunEntry]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"id": e.id, "format": e.format, "quadrant": e.quadrant, "step": step, "loss": loss}
            for e in entries
            for step, loss in enumerate(e.losses, start=1)
        ],
        columns=["id", "format", "quadrant", "step", "loss"],
    )


def loss_chart(entries: Sequence[RunEntry]) -> alt.Chart:
    """Training loss per optimizer step, one line per run, one panel per format."""
    return (
        alt.Chart(loss_frame(entries))
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", axis=alt.Axis(format="d", tickMinStep=1), title="optimizer step"),
            y=alt.Y("loss:Q", title="SFT loss (action tokens)"),
            color=alt.Color("quadrant:N", sort=[*QUADRANTS, "all", "random"], title="cell"),
            tooltip=["id", "step", "loss"],
        )
        .properties(width=220, height=180)
        .facet(column=alt.Column("format:N", sort=list(FORMATS), title=None))
    )
