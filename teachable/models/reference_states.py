"""The states every training after the warm-up is held at and probed at.

- The **anchor replay set**: the bot's decisions on the first `training.anchor_tasks` warm-up
  tasks, states the warmed student was cloned on. No test, held-out or retention task is among
  them (task purposes never share a task).
- The **probe set**: expert states on `training.probe_tasks` tasks of the split's labeled part
  and on `training.probe_retention_tasks` retention-level tasks that Phase 3 does not play,
  `probe_states_per_task` per task spread along the bot's trajectory. Each task's states go to
  one half: `calibration` (doses are chosen there) or `check` (the choice is judged there).

An adapter is probed only at probe states of tasks it was not trained on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from teachable.models.lora import Anchor, SFTExample
from teachable.models.rollouts import prompt_for
from teachable.records.dose import Dose, Half, ReferenceState
from teachable.records.env_state import EnvState
from teachable.records.labeled import LabeledSnapshot
from teachable.world.tasks import task_suite
from teachable.world.text_world import TextWorld, expert_decisions

Task = tuple[str, int]

PROBE_STREAM = 7  # mixed with the run seed to draw the probed labeled tasks


def anchor_states(levels: Sequence[str], seed: int, n_tasks: int) -> list[ReferenceState]:
    """The bot's every decision on the first `n_tasks` warm-up tasks of `levels`."""
    tasks = task_suite("warmup", n_tasks, levels, seed).tasks
    return [
        ReferenceState(state=state, action=action, part="warmup")
        for state, action in expert_decisions(tasks)
    ]


def _spread(decisions: list[tuple[EnvState, str]], per_task: int) -> list[tuple[EnvState, str]]:
    """`per_task` decisions evenly spaced along one trajectory (all of a shorter one)."""
    picked = np.unique(np.linspace(0, len(decisions) - 1, per_task).round().astype(int))
    return [decisions[index] for index in picked] if decisions else []


def _task_states(
    tasks: Sequence[EnvState], part: str, per_task: int, halves: Sequence[Half]
) -> list[ReferenceState]:
    return [
        ReferenceState(state=state, action=action, part=part, half=half)
        for task, half in zip(tasks, halves, strict=True)
        for state, action in _spread(expert_decisions([task]), per_task)
    ]


def _halves(count: int) -> list[Half]:
    """The first half of `count` tasks (rounded up) calibrates, the rest checks."""
    first = (count + 1) // 2
    return ["calibration"] * first + ["check"] * (count - first)


def probe_states(
    labeled_tasks: Collection[Task],
    retention: Sequence[EnvState],
    n_labeled: int,
    per_task: int,
    seed: int,
) -> list[ReferenceState]:
    """Expert states on `n_labeled` tasks drawn from `labeled_tasks` (at most half of them)
    and on the `retention` tasks, each task's states in one half."""
    ordered = sorted(labeled_tasks)
    count = min(n_labeled, len(ordered) // 2)  # the rest are left to train on
    drawn = np.random.default_rng([seed, PROBE_STREAM]).choice(len(ordered), count, replace=False)
    labeled = [EnvState(*ordered[index]) for index in sorted(drawn)]
    return [
        *_task_states(labeled, "labeled", per_task, _halves(len(labeled))),
        *_task_states(retention, "retention", per_task, _halves(len(retention))),
    ]


def examples(states: Sequence[ReferenceState], history: int) -> list[SFTExample]:
    """Each state's unpatched prompt, as the student acts there, with the bot's action."""
    return [
        SFTExample(prompt_for(TextWorld.restore(state.state), history), state.action)
        for state in states
    ]


def probes_for(
    states: Sequence[ReferenceState],
    trained: Collection[Task],
    history: int,
    half: Half | None = None,
    part: str | None = None,
) -> list[SFTExample]:
    """Probe examples of tasks outside `trained`, of one half or part when given."""
    kept = [
        state
        for state in states
        if state.state.task not in trained
        and (half is None or state.half == half)
        and (part is None or state.part == part)
    ]
    return examples(kept, history)


def anchor_for(
    states: Sequence[ReferenceState], dose: Dose, per_step: int, history: int
) -> Anchor | None:
    """The anchor a training with `dose` holds the policy with; none at weight 0."""
    if dose.anchor_weight == 0:
        return None
    return Anchor(tuple(p.prompt for p in examples(states, history)), dose.anchor_weight, per_step)


def trained_tasks(rows: Sequence[LabeledSnapshot]) -> set[Task]:
    """The tasks a training on `rows` has seen."""
    return {row.task for row in rows}
