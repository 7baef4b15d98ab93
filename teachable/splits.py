"""Task splits: each purpose draws its tasks from its own residue class of seeds.

A task seed `s` belongs to purpose `PURPOSES[s % len(PURPOSES)]`, so the warm-up, the rollout
tasks, the expert tasks and the held-out evaluation tasks can never share a task, whatever
the counts or the run seed.
"""

from __future__ import annotations

from collections.abc import Sequence

from teachable.env import EnvState, Suite, build_suite
from teachable.parameters import Parameters

PURPOSES = ("warmup", "warmup_eval", "rollouts", "expert", "heldout", "retention")


def task_suite(
    params: Parameters, purpose: str, n_tasks: int, levels: Sequence[str] | None = None
) -> Suite:
    """The bot-solved tasks of one purpose, deterministic for the run seed."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown task purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    index = PURPOSES.index(purpose)
    return build_suite(
        levels or params.env.levels,
        n_tasks,
        seed=params.run.seed * len(PURPOSES) + index,
        residue=(index, len(PURPOSES)),
    )


def purpose_of(task: EnvState) -> str:
    """Which purpose a task was drawn for."""
    return PURPOSES[task.seed % len(PURPOSES)]
