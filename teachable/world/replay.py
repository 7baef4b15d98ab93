"""Replay checks: a stored snapshot's env state must restore to exactly its stored text.

The record modules read and validate snapshot files; loading through here also replays every
env state in the BabyAI world, so a row that no longer restores is rejected with its id.
`phase0_snapshots` reads a run's Phase 0 snapshot files this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from teachable.records.labeled import LabeledSnapshot, _check_distinct, load_rows
from teachable.records.layout import Phase0Layout
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


def phase0_snapshots(sources: Sequence[str], phase0: Phase0Layout) -> list[Snapshot]:
    """The Phase 0 snapshots of the named experiments, in file order, each replayed."""
    snapshots = []
    for source in sources:
        path = phase0.snapshots(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run phase 0 first")
        snapshots += load_replayed_snapshots(path)
    _check_distinct(snapshots, phase0.folder)
    return snapshots
