"""Phase 0, experiments A and B: mine snapshots from student failures, sample them from
expert trajectories.

Experiment A lets the student play its rollout tasks and keeps the states of failed episodes
where its action differs from the expert's. Experiment B lets the expert (the bot, or a teacher
model) play its own tasks and samples decisions along the way; its trajectory file is named
after who played, and each trajectory counts the steps where a teacher model gave no valid
answer and the bot's action stood in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from teachable.models.rollouts import Episode, EpisodeSpec, prompt_for, run_episodes
from teachable.models.student import Student
from teachable.models.teachers import BotPlayer, TeacherPlayer
from teachable.parameters import ExpertSamplingParameters, Phase0Parameters
from teachable.records.env_state import EnvState
from teachable.records.labeled import save_teacher_health
from teachable.records.layout import Phase0Layout
from teachable.records.snapshot import (
    Snapshot,
    level_of,
    save_snapshots,
    snapshot_id,
)
from teachable.records.store import write_json
from teachable.vocabulary import ACTIONS
from teachable.world.tasks import task_suite
from teachable.world.text_world import TextWorld


def _snapshot(
    state: EnvState,
    source: Literal["student", "expert"],
    mission: str,
    observation: str,
    distribution: Sequence[float],
    student_action: str,
    expert_action: str,
    episode_success: bool,
) -> Snapshot:
    return Snapshot(
        id=snapshot_id(state),
        source=source,
        env_state=state,
        level=level_of(state.env_id),
        mission=mission,
        observation=observation,
        valid_actions=list(ACTIONS),
        student_action=student_action,
        student_distribution=dict(zip(ACTIONS, distribution, strict=True)),
        expert_action=expert_action,
        step=len(state.actions),
        episode_success=episode_success,
    )


def mine_failures(episodes: Sequence[Episode], max_snapshots: int, seed: int) -> list[Snapshot]:
    """Experiment A: states of failed episodes where the student's action differs from the
    expert's, deduplicated by (task, observation), capped at `max_snapshots` by a seeded draw."""
    seen: set[tuple[str, int, str]] = set()
    found: list[Snapshot] = []
    for episode in episodes:
        if episode.success:
            continue
        start = episode.spec.start
        for t, step in enumerate(episode.steps):
            if step.expert_action is None or step.action == step.expert_action:
                continue
            key = (start.env_id, start.seed, step.observation)
            if key in seen:
                continue
            seen.add(key)
            state = EnvState(start.env_id, start.seed, start.actions + tuple(episode.actions[:t]))
            found.append(
                _snapshot(
                    state,
                    "student",
                    episode.mission,
                    step.observation,
                    step.distribution,
                    step.action,
                    step.expert_action,
                    episode_success=False,
                )
            )
    if len(found) > max_snapshots:
        keep = np.random.default_rng(seed).choice(len(found), max_snapshots, replace=False)
        found = [found[i] for i in sorted(keep)]
    return found


@dataclass(frozen=True)
class ExpertTrajectory:
    """An expert's episode on one task: its actions, whether it reached the goal, who played
    (`bot` or the teacher model) and how many steps fell back to the bot's action."""

    start: EnvState
    actions: tuple[str, ...]
    success: bool
    player: str = "bot"
    fallback_steps: int = 0

    def to_dict(self) -> dict:
        return {
            "start": self.start.model_dump(mode="json"),
            "actions": list(self.actions),
            "success": self.success,
            "player": self.player,
            "fallback_steps": self.fallback_steps,
        }

    @classmethod
    def from_dict(cls, row: dict) -> ExpertTrajectory:
        return cls(
            EnvState.model_validate(row["start"]),
            tuple(row["actions"]),
            row["success"],
            row.get("player", "bot"),
            row.get("fallback_steps", 0),
        )


def sample_expert_states(
    trajectories: Sequence[ExpertTrajectory], sample_rate: float, seed: int
) -> list[tuple[EnvState, str, bool]]:
    """Experiment B: each decision of each trajectory kept with probability `sample_rate`,
    as (state, the expert's action there, whether the trajectory succeeded)."""
    rng = np.random.default_rng(seed)
    picked = []
    for trajectory in trajectories:
        for t, action in enumerate(trajectory.actions):
            if rng.random() < sample_rate:
                start = trajectory.start
                state = EnvState(start.env_id, start.seed, start.actions + trajectory.actions[:t])
                picked.append((state, action, trajectory.success))
    return picked


def expert_snapshots(
    student: Student, picked: Sequence[tuple[EnvState, str, bool]], history: int = 0
) -> list[Snapshot]:
    """Snapshots at expert-visited states, with the student's distribution scored in batch."""
    worlds = [TextWorld.restore(state) for state, _, _ in picked]
    prompts = [prompt_for(world, history) for world in worlds]
    distributions = student.action_probabilities(prompts) if prompts else []
    return [
        _snapshot(
            state,
            "expert",
            world.mission,
            prompt.observation,
            [round(float(p), 6) for p in distribution],
            ACTIONS[int(np.argmax(distribution))],
            expert_action,
            success,
        )
        for (state, expert_action, success), world, prompt, distribution in zip(
            picked, worlds, prompts, distributions, strict=True
        )
    ]


def collect_student_failures(
    student: Student,
    phase0: Phase0Parameters,
    levels: Sequence[str],
    seed: int,
    out: Phase0Layout,
    progress: bool = True,
) -> tuple[list[Episode], list[Snapshot]]:
    """Experiment A: student rollouts on the rollout tasks of `levels`, then failure mining.

    Writes the rollouts and the failure snapshots into `out`.
    """
    tasks = task_suite("rollouts", phase0.n_tasks, levels, seed).tasks
    specs = [EpisodeSpec(task, seed=(seed, i)) for i, task in enumerate(tasks)]
    episodes = run_episodes(
        student,
        specs,
        phase0.max_steps,
        phase0.temperature,
        student.params.history,
        record_expert=True,
        progress=progress,
    )
    write_json(out.rollouts, [episode.to_dict() for episode in episodes])
    snapshots = mine_failures(episodes, phase0.max_snapshots, seed)
    save_snapshots(out.failure_snapshots, snapshots)
    return episodes, snapshots


def collect_expert_snapshots(
    student: Student,
    expert: ExpertSamplingParameters,
    levels: Sequence[str],
    seed: int,
    out: Phase0Layout,
    player: BotPlayer | TeacherPlayer | None = None,
    progress: bool = True,
) -> tuple[list[ExpertTrajectory], list[Snapshot]]:
    """Experiment B: expert trajectories on their own tasks of `levels`, states sampled at
    `sample_rate`.

    `player` plays a whole episode from a state (the bot by default; a teacher model from
    `trajectory_player`). A teacher model's answers are held to its
    `teacher.max_invalid_fraction`: above it this raises `TeacherOutage` and writes nothing.
    Writes the trajectories (named after the player), the sampled snapshots and, for a teacher
    model, its health into `out`.
    """
    player = player or BotPlayer()
    out.teacher_health.unlink(missing_ok=True)
    tasks = task_suite("expert", expert.n_tasks, levels, seed).tasks
    what = "phase 0 experiment B"
    monitor = player.monitor(what, expert.n_tasks * expert.max_steps, progress)
    played = [player.play(task, expert.max_steps, monitor) for task in tasks]
    if monitor is not None:
        health = monitor.finish(sum(len(episode.actions) for episode in played))
        save_teacher_health(out.teacher_health, health)
    trajectories = [
        ExpertTrajectory(task, p.actions, p.success, player.name, p.fallback_steps)
        for task, p in zip(tasks, played, strict=True)
    ]
    write_json(
        out.expert_trajectories_of(player.name),
        [trajectory.to_dict() for trajectory in trajectories],
    )
    picked = sample_expert_states(trajectories, expert.sample_rate, seed)
    snapshots = expert_snapshots(student, picked, student.params.history)
    save_snapshots(out.expert_snapshots, snapshots)
    return trajectories, snapshots
