"""Snapshots: decision states mined from student failures or sampled from experts.

One schema (`Snapshot`) for both experiments, read and written here. Reading a snapshot file
checks every field; a bad row is rejected with its file, id and field (`world.replay` also
replays every env state).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teachable.records.env_state import EnvState
from teachable.records.store import read_json, write_json


class SnapshotError(ValueError):
    """A snapshot file holds a row that is malformed or does not replay."""


class Snapshot(BaseModel):
    """A decision state with what the student and the expert would do there."""

    model_config = ConfigDict(extra="forbid")

    id: str
    source: Literal["student", "expert"]
    env_state: EnvState
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
        return self.env_state

    @property
    def task(self) -> tuple[str, int]:
        return self.env_state.task


def snapshot_id(state: EnvState) -> str:
    """A stable id: the hash of the env state, so the same state always has the same id."""
    text = json.dumps([state.env_id, state.seed, list(state.actions)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def level_of(env_id: str) -> str:
    """`BabyAI-GoToLocal-v0` -> `GoToLocal`."""
    return env_id.removeprefix("BabyAI-").rsplit("-v", 1)[0]


def save_snapshots(path: Path, snapshots: Iterable[Snapshot]) -> None:
    write_json(path, [snapshot.model_dump(mode="json") for snapshot in snapshots])


def row_error(path: Path, index: int, row: object, error: ValidationError) -> SnapshotError:
    """The error for row `index` of `path`, naming its id (or position) and every bad field."""
    sid = row.get("id", f"#{index}") if isinstance(row, dict) else f"#{index}"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
    )
    return SnapshotError(f"{path}: snapshot {sid}: {problems}")


def load_snapshots(path: Path) -> list[Snapshot]:
    """Read a snapshot file, validating every row (`world.replay` also replays them)."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise SnapshotError(f"{path}: expected a list of snapshots")
    snapshots = []
    for index, row in enumerate(rows):
        try:
            snapshot = Snapshot.model_validate(row)
        except ValidationError as error:
            raise row_error(path, index, row, error) from None
        snapshots.append(snapshot)
    return snapshots
