"""The evaluation record: the episodes every model played and the tables figured from them, as
Phase 3 writes them for the matrix and Phase 5 for each selection method. A table row describes
a `Unit` (the base, one trained run, or a cell pooling its runs over the training seeds).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from teachable.records.layout import EvaluationLayout
from teachable.records.store import write_json
from teachable.records.training_summary import BASE, RunEntry

RETENTION_DROP_LIMIT = 0.10

# the cell every gain is also set against: the training of `baseline_all_demo` with its targets
# permuted among its examples, so a gain over it is what the right targets add
CONTROL = "control_shuffled_demo"


SUITES = ("tasks", "snapshots", "retention")


PlayMode = Literal["sampled", "greedy"]


MODES: tuple[PlayMode, ...] = ("sampled", "greedy")


EPISODE_COLUMNS = [
    "model",
    "suite",
    "key",
    "episode",
    "mode",
    "env_id",
    "level",
    "seed",
    "quadrant",
    "success",
    "steps",
    "loop",
    "steps_without_progress",
    "timeout",
    "actions",
]


@dataclass(frozen=True)
class Unit:
    """What a table row measures: the base, one run (one training seed of a cell), or a cell
    (its runs over the seeds); `runs` are the evaluated models it pools, none when every run
    was skipped."""

    kind: Literal["base", "run", "cell"]
    name: str
    cell: str
    seed: int | None
    quadrant: str | None
    format: str | None
    n_train: int
    runs: tuple[str, ...]

    def columns(self) -> dict:
        """The row's description: what was trained, on how many seeds, and its status."""
        status = "base" if self.kind == "base" else "evaluated" if self.runs else "skipped"
        return {
            "unit": self.kind,
            "model": self.name,
            "cell": self.cell,
            "seed": self.seed,
            "seeds": len(self.runs),
            "quadrant": self.quadrant,
            "format": self.format,
            "n_train": self.n_train,
            "status": status,
        }


def units(runs: Sequence[RunEntry]) -> list[Unit]:
    """The base, every run of a summary (skipped ones too), then every cell, in the summary's
    order; a cell's runs are its trained seeds in seed order."""
    base = Unit("base", BASE, BASE, None, None, None, 0, (BASE,))
    singles = [
        Unit(
            "run",
            run.id,
            run.cell,
            run.seed,
            run.quadrant,
            run.format,
            run.n_train,
            () if run.status == "skipped" else (run.id,),
        )
        for run in runs
    ]
    cells = []
    for cell in dict.fromkeys(run.cell for run in runs):
        members = sorted((run for run in runs if run.cell == cell), key=lambda run: run.seed)
        first = members[0]
        trained = tuple(run.id for run in members if run.status == "trained")
        cells.append(
            Unit("cell", cell, cell, None, first.quadrant, first.format, first.n_train, trained)
        )
    return [base, *singles, *cells]


def unit_table(runs: Sequence[RunEntry]) -> pd.DataFrame:
    """One row per unit: the base, each run, each cell, with what it was trained on."""
    return pd.DataFrame([unit.columns() for unit in units(runs)])


@dataclass
class Evaluation:
    """An evaluation's tables, as written under its output folder, and its episodes."""

    units: pd.DataFrame
    episodes: pd.DataFrame
    overall: pd.DataFrame
    per_quadrant: pd.DataFrame
    transfer: pd.DataFrame
    transfer_summary: pd.DataFrame
    retention: pd.DataFrame
    stuckness: pd.DataFrame
    record: dict


def save_evaluation(evaluation: Evaluation, out: EvaluationLayout) -> None:
    """Write an evaluation's tables and record into its output folder."""
    out.folder.mkdir(parents=True, exist_ok=True)
    evaluation.overall.to_csv(out.overall, index=False)
    evaluation.per_quadrant.to_csv(out.per_quadrant, index=False)
    evaluation.transfer.to_csv(out.transfer, index=False)
    evaluation.retention.to_csv(out.retention, index=False)
    evaluation.stuckness.to_csv(out.stuckness, index=False)
    summary = evaluation.transfer_summary.to_json(orient="records")
    write_json(out.transfer_summary, json.loads(summary))
    write_json(out.record, evaluation.record)
