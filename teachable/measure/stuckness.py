"""Stuckness, read from the agent states an episode passes through: an episode *loops* when one
state occurs `LOOP_VISITS` (3) or more times, the start included; a step *makes progress* when
it leads to a state not seen before in the episode; an episode *times out* when the step budget
runs out before the level ends. Rates per model, suite and play mode make the stuckness table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import pandas as pd

LOOP_VISITS = 3


def has_loop(states: Sequence[Hashable], visits: int = LOOP_VISITS) -> bool:
    """Whether one agent state occurs `visits` or more times in the episode."""
    return bool(states) and max(Counter(states).values()) >= visits


def steps_without_progress(states: Sequence[Hashable]) -> int:
    """How many steps led back to an agent state already seen in the episode."""
    seen, stalled = set(states[:1]), 0
    for state in states[1:]:
        stalled += state in seen
        seen.add(state)
    return stalled


def stuckness_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Loop rate, mean steps without progress and timeout rate per model and play mode, on the
    held-out tasks and on the test snapshots."""
    played = episodes[episodes["suite"].isin(["tasks", "snapshots"])]
    return (
        played.groupby(["model", "suite", "mode"], sort=False)
        .agg(
            n_episodes=("success", "size"),
            loop_rate=("loop", "mean"),
            mean_steps_without_progress=("steps_without_progress", "mean"),
            timeout_rate=("timeout", "mean"),
            success_rate=("success", "mean"),
        )
        .reset_index()
    )
