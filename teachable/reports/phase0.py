"""Phase 0's tables and charts: success by level, the student's entropy along its episodes,
the snapshots mined, and one snapshot's action distribution.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from teachable.models.rollouts import Episode
from teachable.models.student import normalized_entropy
from teachable.records.snapshot import Snapshot, level_of


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
