"""Snapshots: replayable decision states, mined from student failures or sampled from experts.

One schema (`Snapshot`) for both experiments, read and written here. Loading a snapshot file
checks every field and replays every env state; a bad row is rejected with its id and field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from teachable.env import ACTIONS, EnvState, TextWorld, expert_trajectory
from teachable.parameters import Parameters
from teachable.rollouts import Episode, EpisodeSpec, prompt_for, run_episodes
from teachable.splits import task_suite
from teachable.store import read_json, write_json
from teachable.student import Student


class SnapshotError(ValueError):
    """A snapshot file holds a row that is malformed or does not replay."""


class EnvStateRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    env_id: str
    seed: int = Field(ge=0)
    actions: list[str]

    @field_validator("actions")
    @classmethod
    def _valid_actions(cls, actions: list[str]) -> list[str]:
        unknown = sorted(set(actions) - set(ACTIONS))
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}")
        return actions

    def to_state(self) -> EnvState:
        return EnvState(self.env_id, self.seed, tuple(self.actions))

    @classmethod
    def of(cls, state: EnvState) -> EnvStateRecord:
        return cls(env_id=state.env_id, seed=state.seed, actions=list(state.actions))


class Snapshot(BaseModel):
    """A decision state with what the student and the expert would do there."""

    model_config = ConfigDict(extra="forbid")

    id: str
    source: Literal["student", "expert"]
    env_state: EnvStateRecord
    level: str
    mission: str
    observation: str
    valid_actions: list[str]
    student_action: str
    student_distribution: dict[str, float]
    expert_action: str
    step: int = Field(ge=0)
    episode_success: bool

    @property
    def state(self) -> EnvState:
        return self.env_state.to_state()

    @property
    def task(self) -> tuple[str, int]:
        return (self.env_state.env_id, self.env_state.seed)


def snapshot_id(state: EnvState) -> str:
    """A stable id: the hash of the env state, so the same state always has the same id."""
    text = json.dumps([state.env_id, state.seed, list(state.actions)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def level_of(env_id: str) -> str:
    """`BabyAI-GoToLocal-v0` -> `GoToLocal`."""
    return env_id.removeprefix("BabyAI-").rsplit("-v", 1)[0]


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
        env_state=EnvStateRecord.of(state),
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
    """An expert's episode on one task: its actions and whether it reached the goal."""

    start: EnvState
    actions: tuple[str, ...]
    success: bool

    def to_dict(self) -> dict:
        return {
            "start": self.start.to_dict(),
            "actions": list(self.actions),
            "success": self.success,
        }

    @classmethod
    def from_dict(cls, row: dict) -> ExpertTrajectory:
        return cls(EnvState.from_dict(row["start"]), tuple(row["actions"]), row["success"])


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


def save_snapshots(path: Path, snapshots: Iterable[Snapshot]) -> None:
    write_json(path, [snapshot.model_dump(mode="json") for snapshot in snapshots])


def row_error(path: Path, index: int, row: object, error: ValidationError) -> SnapshotError:
    """The error for row `index` of `path`, naming its id (or position) and every bad field."""
    sid = row.get("id", f"#{index}") if isinstance(row, dict) else f"#{index}"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
    )
    return SnapshotError(f"{path}: snapshot {sid}: {problems}")


def load_snapshots(path: Path, replay: bool = True) -> list[Snapshot]:
    """Read a snapshot file, validating every row and (by default) replaying its env state."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise SnapshotError(f"{path}: expected a list of snapshots")
    snapshots = []
    for index, row in enumerate(rows):
        try:
            snapshot = Snapshot.model_validate(row)
        except ValidationError as error:
            raise row_error(path, index, row, error) from None
        if replay:
            check_replay(snapshot, path)
        snapshots.append(snapshot)
    return snapshots


def check_replay(snapshot: Snapshot, path: Path | str = "<memory>") -> None:
    """The env state must restore to exactly the stored observation text."""
    try:
        world = TextWorld.restore(snapshot.state)
    except Exception as error:
        raise SnapshotError(
            f"{path}: snapshot {snapshot.id}: env_state does not restore ({error})"
        ) from None
    if world.observation != snapshot.observation or world.mission != snapshot.mission:
        raise SnapshotError(
            f"{path}: snapshot {snapshot.id}: env_state does not replay to the stored observation"
        )


def collect_student_failures(
    student: Student, params: Parameters, out_dir: Path, progress: bool = True
) -> tuple[list[Episode], list[Snapshot]]:
    """Experiment A: student rollouts on the rollout tasks, then failure mining.

    Writes `rollouts.json` and `failure_snapshots.json` under `out_dir`.
    """
    phase0 = params.phase0
    tasks = task_suite(params, "rollouts", phase0.n_tasks).tasks
    specs = [EpisodeSpec(task, seed=(params.run.seed, i)) for i, task in enumerate(tasks)]
    episodes = run_episodes(
        student,
        specs,
        phase0.max_steps,
        phase0.temperature,
        params.student.history,
        record_expert=True,
        progress=progress,
    )
    write_json(out_dir / "rollouts.json", [episode.to_dict() for episode in episodes])
    snapshots = mine_failures(episodes, phase0.max_snapshots, params.run.seed)
    save_snapshots(out_dir / "failure_snapshots.json", snapshots)
    return episodes, snapshots


def collect_expert_snapshots(
    student: Student,
    params: Parameters,
    out_dir: Path,
    act: Callable[[EnvState, int], tuple[list[str], bool]] = expert_trajectory,
    source_name: str = "bot",
) -> tuple[list[ExpertTrajectory], list[Snapshot]]:
    """Experiment B: expert trajectories on their own tasks, states sampled at `sample_rate`.

    `act` plays a whole episode from a state (the bot by default; a teacher model otherwise).
    Writes `expert_trajectories/all_trajectories_<source_name>.json` and
    `snapshots_expert.json` under `out_dir`.
    """
    expert = params.phase0.expert
    tasks = task_suite(params, "expert", expert.n_tasks).tasks
    trajectories = [ExpertTrajectory(task, *_played(act, task, expert.max_steps)) for task in tasks]
    write_json(
        out_dir / "expert_trajectories" / f"all_trajectories_{source_name}.json",
        [trajectory.to_dict() for trajectory in trajectories],
    )
    picked = sample_expert_states(trajectories, expert.sample_rate, params.run.seed)
    snapshots = expert_snapshots(student, picked, params.student.history)
    save_snapshots(out_dir / "snapshots_expert.json", snapshots)
    return trajectories, snapshots


def _played(
    act: Callable[[EnvState, int], tuple[list[str], bool]], task: EnvState, max_steps: int
) -> tuple[tuple[str, ...], bool]:
    actions, success = act(task, max_steps)
    return tuple(actions), success
