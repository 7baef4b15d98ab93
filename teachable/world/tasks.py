"""Tasks by purpose: bot-checked suites of BabyAI tasks, each purpose on its own seeds.

A task is `(env_id, seed)`. A task seed `s` belongs to purpose `PURPOSES[s % len(PURPOSES)]`, so
the warm-up, the rollout tasks, the expert tasks, the held-out evaluation tasks and the
retention tasks can never share a task, whatever the counts or the run seed. A task whose bot
run fails is dropped from its suite and counted, never silently used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import minigrid  # noqa: F401  (registers the BabyAI-* ids with gymnasium)
import numpy as np
from tqdm.auto import tqdm

from teachable.records.env_state import EnvState
from teachable.world.text_world import BOT_MAX_STEPS, env_id, expert_trajectory


@dataclass
class Suite:
    """Tasks the bot solves, and the drawn tasks it did not (dropped, never used)."""

    tasks: list[EnvState] = field(default_factory=list)
    dropped: list[EnvState] = field(default_factory=list)


def build_suite(
    levels: Sequence[str],
    n_tasks: int,
    seed: int,
    max_steps: int = BOT_MAX_STEPS,
    exclude: set[tuple[str, int]] = frozenset(),
    residue: tuple[int, int] = (0, 1),
) -> Suite:
    """Draw `n_tasks` bot-solved tasks, round-robin over `levels`, with distinct seeds drawn
    from `seed` and none of the `(env_id, seed)` tasks in `exclude`. With `residue=(r, m)`
    every task seed is congruent to r modulo m, which keeps suites of different purposes apart."""
    ids = [env_id(level) for level in levels]
    if not ids or n_tasks < 0:
        raise ValueError(f"need at least one level and n_tasks >= 0, got {levels!r}, {n_tasks}")
    offset, modulus = residue
    if not 0 <= offset < modulus:
        raise ValueError(f"residue must be (r, m) with 0 <= r < m, got {residue!r}")
    rng = np.random.default_rng(seed)
    suite, drawn = Suite(), set()
    give_up = 20 * n_tasks + 100
    with tqdm(total=n_tasks, desc="suite", leave=False, disable=n_tasks < 50) as progress:
        while len(suite.tasks) < n_tasks:
            if len(drawn) >= give_up:
                raise RuntimeError(
                    f"the bot solved only {len(suite.tasks)} of {len(drawn)} drawn tasks "
                    f"within {max_steps} steps on {ids}"
                )
            task_seed = offset + modulus * int(rng.integers(2**31 // modulus))
            task = EnvState(ids[len(suite.tasks) % len(ids)], task_seed)
            if task_seed in drawn or task.task in exclude:
                continue
            drawn.add(task_seed)
            if expert_trajectory(task, max_steps)[1]:
                suite.tasks.append(task)
                progress.update()
            else:
                suite.dropped.append(task)
    return suite


PURPOSES = ("warmup", "warmup_eval", "rollouts", "expert", "heldout", "retention")


def task_suite(purpose: str, n_tasks: int, levels: Sequence[str], seed: int) -> Suite:
    """The bot-solved tasks of one purpose on `levels`, deterministic for the run `seed`."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown task purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    index = PURPOSES.index(purpose)
    return build_suite(
        levels,
        n_tasks,
        seed=seed * len(PURPOSES) + index,
        residue=(index, len(PURPOSES)),
    )


def purpose_of(task: EnvState) -> str:
    """Which purpose a task was drawn for."""
    return PURPOSES[task.seed % len(PURPOSES)]
