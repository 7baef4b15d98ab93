"""Replay checks: a stored snapshot's env state must restore to exactly its stored text.

The record modules read and validate snapshot files; loading through here also replays every
env state in the BabyAI world, so a row that no longer restores is rejected with its id.
"""

from __future__ import annotations

from pathlib import Path

from teachable.records.labeled import LabeledSnapshot, load_rows
from teachable.records.snapshot import Snapshot, SnapshotError, load_snapshots
from teachable.world.text_world import TextWorld


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


def load_replayed_snapshots(path: Path) -> list[Snapshot]:
    """A snapshot file, validated and replayed row by row."""
    snapshots = load_snapshots(path)
    for snapshot in snapshots:
        check_replay(snapshot, path)
    return snapshots


def load_replayed_rows(path: Path) -> list[LabeledSnapshot]:
    """Snapshots or labeled rows (JSON or JSONL), validated and replayed row by row."""
    rows = load_rows(path)
    for row in rows:
        check_replay(row, path)
    return rows
