"""Transfer: how much a run trained on one quadrant's snapshots gains on each quadrant's test
snapshots, as the train x evaluation quadrant matrix and as the paired difference between the
diagonal (its own quadrant) and the off-diagonal (the others).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from teachable.measure.gains import estimate_columns, of_suite, outcome_cube, paired_gain
from teachable.measure.intervals import hierarchical_mean
from teachable.measure.verdicts import outcome
from teachable.records.evaluation import Unit
from teachable.records.training_summary import BASE
from teachable.vocabulary import QUADRANTS


def quadrant_cells(units: Sequence[Unit]) -> list[Unit]:
    """The evaluated cells trained on one quadrant (not the baselines or selection methods)."""
    return [u for u in units if u.kind == "cell" and u.quadrant in QUADRANTS and u.runs]


def transfer_matrix(episodes: pd.DataFrame, units: Sequence[Unit]) -> pd.DataFrame:
    """Gain over the base of each quadrant x format cell on each quadrant's test snapshots,
    with its interval over seeds, snapshots and episodes; then per train quadrant every
    format's runs together (`format` = "mean", its interval over those runs). `diagonal` marks
    train = eval."""
    cells = quadrant_cells(units)
    groups = [(cell.format, cell.quadrant, cell.name, cell.runs) for cell in cells]
    for quadrant in QUADRANTS:
        pooled = tuple(run for cell in cells if cell.quadrant == quadrant for run in cell.runs)
        if pooled:
            groups.append(("mean", quadrant, "", pooled))
    rows = []
    for format, train, cell, runs in groups:
        replicates = "runs" if format == "mean" else "seeds"  # pooled formats' runs, or seeds
        for quadrant in QUADRANTS:
            chosen = episodes[episodes["quadrant"] == quadrant]
            gain = paired_gain(chosen, runs, [BASE], "snapshots", replicates=replicates)
            rows.append(
                {
                    "format": format,
                    "train_quadrant": train,
                    "eval_quadrant": quadrant,
                    "cell": cell,
                    "seeds": len(runs),
                    **estimate_columns("gain", gain),
                    "diagonal": train == quadrant,
                }
            )
    return pd.DataFrame(rows)


def transfer_cubes(episodes: pd.DataFrame, runs: Sequence[Unit]) -> tuple[np.ndarray, np.ndarray]:
    """Gains over the base on each test snapshot for each (format, seed) of the given quadrant
    runs, shaped (pairs, items, episodes): of the run trained on the snapshot's quadrant (the
    diagonal), and the mean of the runs trained on the other quadrants (off it); NaN where no
    such run exists."""
    snapshots = of_suite(episodes, "snapshots", "sampled")
    keys = sorted(set(snapshots["key"]))
    quadrant_of = dict(zip(snapshots["key"], snapshots["quadrant"], strict=True))
    base = outcome_cube(episodes, [BASE], "snapshots")[0]
    groups = sorted({(run.format, run.seed) for run in runs})
    diagonal = np.full((len(groups), *base.shape), np.nan)
    off = np.full_like(diagonal, np.nan)
    for g, group in enumerate(groups):
        trained = {run.quadrant: run.name for run in runs if (run.format, run.seed) == group}
        cube = outcome_cube(episodes, list(trained.values()), "snapshots") - base
        gains = dict(zip(trained, cube, strict=True))
        for i, key in enumerate(keys):
            own = quadrant_of[key]
            if own in gains:
                diagonal[g, i] = gains[own][i]
            others = [gain[i] for quadrant, gain in gains.items() if quadrant != own]
            if others:
                off[g, i] = np.mean(others, axis=0)
    return diagonal, off


def transfer_summary(episodes: pd.DataFrame, units: Sequence[Unit]) -> pd.DataFrame:
    """Per format, and for every format together (`mean`): the gain on the test snapshots of
    the run trained on their quadrant (diagonal), the mean gain of the runs trained on the
    other quadrants (off-diagonal), and the paired difference, each with its interval over
    (format, seed) pairs (`runs`), snapshots and episodes. `diagonal_ahead` is the three-way
    outcome of difference > 0 (the plan expects it to hold)."""
    runs = [u for u in units if u.kind == "run" and u.quadrant in QUADRANTS and u.runs]
    formats = list(dict.fromkeys(run.format for run in runs))
    rows = []
    for format in [*formats, "mean"] if formats else []:
        diagonal, off = transfer_cubes(episodes, [r for r in runs if format in (r.format, "mean")])
        difference = hierarchical_mean(diagonal - off, replicates="runs")
        rows.append(
            {
                "format": format,
                **estimate_columns("diagonal_gain", hierarchical_mean(diagonal, replicates="runs")),
                **estimate_columns("off_diagonal_gain", hierarchical_mean(off, replicates="runs")),
                **estimate_columns("difference", difference),
                "diagonal_ahead": outcome(difference, ">", 0.0),
            }
        )
    return pd.DataFrame(rows)
