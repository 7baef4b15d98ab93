"""Reports: the tables and charts the phase notebooks show, as DataFrames and Altair charts.

Charts render as static PNG inside notebooks (vl-convert, no CDN), so an executed notebook
reads offline as an HTML report, and `save_chart` writes the same chart as PNG and SVG.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import altair as alt
import numpy as np
import pandas as pd

from teachable.rollouts import Episode
from teachable.snapshots import Snapshot, level_of
from teachable.student import normalized_entropy
from teachable.supervision import FORMATS

if TYPE_CHECKING:
    from teachable.labels import LabeledSnapshot


def use_offline_charts() -> None:
    """Render Altair charts as embedded PNG (no network) and lift the row limit."""
    alt.renderers.enable("png", scale_factor=1.5)
    alt.data_transformers.disable_max_rows()


def save_chart(chart: alt.TopLevelMixin, stem: Path) -> list[Path]:
    """Write `stem.png` and `stem.svg` without any network."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        chart.save(str(path))
    return paths


def chart_png(chart: alt.TopLevelMixin, scale: float = 1.5) -> bytes:
    """The chart as PNG bytes, for widgets that redraw it (no network, no row limit)."""
    buffer = io.BytesIO()
    with alt.data_transformers.disable_max_rows():
        chart.save(buffer, format="png", scale_factor=scale)
    return buffer.getvalue()


def episode_frame(episodes: Sequence[Episode]) -> pd.DataFrame:
    """One row per episode: level, seed, success, steps."""
    return pd.DataFrame(
        {
            "level": level_of(e.spec.start.env_id),
            "seed": e.spec.start.seed,
            "success": e.success,
            "steps": len(e.steps),
        }
        for e in episodes
    )


def success_by_level(episodes: Sequence[Episode]) -> pd.DataFrame:
    """Success rate, episode count and mean steps per level."""
    frame = episode_frame(episodes)
    return (
        frame.groupby("level")
        .agg(
            episodes=("success", "size"),
            success_rate=("success", "mean"),
            mean_steps=("steps", "mean"),
        )
        .reset_index()
    )


def step_entropies(episodes: Sequence[Episode], failures: Sequence[Snapshot]) -> pd.DataFrame:
    """The student's normalized entropy at every visited state and at the failure snapshots."""
    every = [{"states": "all states", "entropy": s.entropy} for e in episodes for s in e.steps]
    failed = [{"states": "failure snapshots", "entropy": _entropy(s)} for s in failures]
    return pd.DataFrame(every + failed)


def _entropy(snapshot: Snapshot) -> float:
    return float(normalized_entropy(np.array([list(snapshot.student_distribution.values())]))[0])


def snapshot_frame(snapshots: Sequence[Snapshot]) -> pd.DataFrame:
    """One row per snapshot with its level, source, step and the two actions."""
    return pd.DataFrame(
        {
            "id": s.id,
            "source": s.source,
            "level": s.level,
            "step": s.step,
            "student_action": s.student_action,
            "expert_action": s.expert_action,
        }
        for s in snapshots
    )


def snapshot_counts(*groups: Sequence[Snapshot]) -> pd.DataFrame:
    """Snapshots per level (rows) and source (columns)."""
    frame = pd.concat([snapshot_frame(group) for group in groups if group], ignore_index=True)
    if frame.empty:
        return pd.DataFrame()
    return frame.pivot_table(
        index="level", columns="source", values="id", aggfunc="count", fill_value=0
    )


def success_chart(table: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("level:N", title="level"),
            y=alt.Y("success_rate:Q", title="success rate", scale=alt.Scale(domain=[0, 1])),
            tooltip=["level", "episodes", "success_rate", "mean_steps"],
        )
        .properties(width=320, height=200, title="Student success per level")
    )


def entropy_chart(frame: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(frame)
        .transform_density("entropy", groupby=["states"], extent=[0, 1], as_=["entropy", "density"])
        .mark_area(opacity=0.45)
        .encode(
            x=alt.X("entropy:Q", title="normalized entropy U"),
            y=alt.Y("density:Q", stack=None),
            color="states:N",
        )
        .properties(width=360, height=200, title="Student uncertainty: failures vs all states")
    )


def distribution_chart(snapshot: Snapshot) -> alt.Chart:
    """The student's action distribution at a snapshot, the expert's action highlighted."""
    frame = pd.DataFrame(
        {"action": a, "probability": p, "expert": a == snapshot.expert_action}
        for a, p in snapshot.student_distribution.items()
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("action:N", sort=None),
            color=alt.Color(
                "expert:N", scale=alt.Scale(domain=[False, True], range=["#9ca3af", "#16a34a"])
            ),
        )
        .properties(width=220, height=120)
    )


def _format_colour(column: str) -> alt.Color:
    """The same colour for a supervision format in every chart."""
    scale = alt.Scale(domain=list(FORMATS), range=["#2563eb", "#f59e0b", "#9333ea"])
    return alt.Color(f"{column}:N", scale=scale, title="format")


def elp_frame(rows: Sequence[LabeledSnapshot]) -> pd.DataFrame:
    """One line per (snapshot, supervision format) with its ELP, for rows with CPT labels."""
    return pd.DataFrame(
        [
            {"id": row.id, "quadrant": row.quadrant, "format": name, "ELP": value}
            for row in rows
            if row.cpt is not None
            for name, value in row.cpt.ELP.items()
        ],
        columns=["id", "quadrant", "format", "ELP"],
    )


def elp_chart(frame: pd.DataFrame) -> alt.Chart:
    """How far each patch format moves the success rate over no patch, per format."""
    return (
        alt.Chart(frame)
        .mark_boxplot(extent="min-max", size=28)
        .encode(
            x=alt.X("format:N", sort=list(FORMATS), axis=alt.Axis(labelAngle=0), title=None),
            y=alt.Y("ELP:Q", scale=alt.Scale(domain=[-1, 1]), title="ELP = p_format - p_base"),
            color=_format_colour("format"),
        )
        .properties(width=240, height=200, title="ELP per format")
    )


def route_chart(labels: pd.DataFrame) -> alt.Chart:
    """Which format beats the placebo most (`route_net`), counted per quadrant."""
    frame = labels.dropna(subset=["route_net"]).fillna({"quadrant": "unassigned"})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("count():Q", title="snapshots"),
            y=alt.Y("quadrant:N", title=None),
            color=_format_colour("route_net"),
        )
        .properties(width=260, height=160, title="Best format over the placebo, per quadrant")
    )
