"""Phase 2's tables and charts: the runs of the training matrix (each cell once per seed), their
train-set sizes and their loss curves.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from teachable.measure.gains import estimate_columns
from teachable.records.training_summary import RunEntry
from teachable.reports.palette import cell_colour
from teachable.vocabulary import FORMATS, QUADRANTS


def _probe_columns(entry: RunEntry) -> dict:
    """The run's dose, and its drift and specificity with their intervals (none if skipped)."""
    if entry.probe is None:
        return {}
    columns = {"dose": entry.dose.label() if entry.dose else None}
    columns |= estimate_columns("drift", entry.probe.drift)
    return columns | estimate_columns("specificity", entry.probe.specificity)


def summary_frame(entries: Sequence[RunEntry]) -> pd.DataFrame:
    """One line per run: id, cell, seed, quadrant, format, status, train size, steps, seconds,
    first and last loss, and its dose with its drift and specificity at the probe states."""
    return pd.DataFrame(
        [
            {
                "id": e.id,
                "cell": e.cell,
                "seed": e.seed,
                "quadrant": e.quadrant,
                "format": e.format,
                "status": e.status,
                "n_train": e.n_train,
                "steps": e.steps,
                "seconds": e.seconds,
                "first_loss": e.losses[0] if e.losses else None,
                "last_loss": e.losses[-1] if e.losses else None,
                **_probe_columns(e),
                "reason": e.reason,
            }
            for e in entries
        ]
    )


def train_size_table(entries: Sequence[RunEntry]) -> pd.DataFrame:
    """Train snapshots per cell (the same at every seed): quadrants (and baselines) as rows,
    formats as columns."""
    frame = summary_frame(entries)
    cells = [*QUADRANTS, "all", "random", "shuffled"]
    table = frame.pivot_table(index="quadrant", columns="format", values="n_train", aggfunc="max")
    return table.reindex(
        index=[c for c in cells if c in table.index],
        columns=[f for f in FORMATS if f in table.columns],
    )


def train_size_chart(entries: Sequence[RunEntry]) -> alt.LayerChart:
    """The train-set size of every cell at its first seed, skipped runs greyed out."""
    frame = summary_frame(entries)
    frame = frame[frame["seed"] == frame["seed"].min()]
    base = alt.Chart(frame).encode(
        x=alt.X("format:N", sort=list(FORMATS), axis=alt.Axis(labelAngle=0), title=None),
        y=alt.Y("quadrant:N", sort=[*QUADRANTS, "all", "random", "shuffled"], title=None),
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
            color=cell_colour(),
            detail="id:N",
            tooltip=["id", "step", "loss"],
        )
        .properties(width=220, height=180)
        .facet(column=alt.Column("format:N", sort=list(FORMATS), title=None))
    )
