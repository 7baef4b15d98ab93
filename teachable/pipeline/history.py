"""A run's history: every invocation of `run` on a run folder, one line each, append-only.

`provenance.json` describes the last invocation; `runs/<run>/history.jsonl` keeps them all:
the command line, the git commit, the digest of the parameters, each phase run or skipped
with its reason, its times and the units it had left, the start and finish times and the
outcome (`finished` or `failed`). The runner appends the line when the invocation ends, even
one that skipped every phase, while it still holds the run folder's lock; an invocation that
finds the folder busy, or that stops before it starts (bad parameters), leaves none.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ValidationError

from teachable.pipeline.provenance import PhaseRecord, Provenance
from teachable.records.layout import RunLayout
from teachable.records.store import append_jsonl, read_jsonl


def parameters_sha256(parameters: dict) -> str:
    """SHA-256 of a parameter dump, keys sorted: equal digests, equal parameters."""
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()


class Invocation(BaseModel):
    """One invocation of `run` on a run folder, as its history keeps it."""

    command: str
    parameter_file: str
    parameters_sha256: str
    git: dict
    started_at: str
    finished_at: str | None
    outcome: str
    phases: list[PhaseRecord]

    @classmethod
    def of(cls, provenance: Provenance, command: str) -> Invocation:
        """The invocation `provenance` records, started by `command`."""
        return cls(
            command=command,
            parameter_file=provenance.parameter_file,
            parameters_sha256=parameters_sha256(provenance.parameters),
            git=provenance.git,
            started_at=provenance.started_at,
            finished_at=provenance.finished_at,
            outcome=provenance.status,
            phases=provenance.phases,
        )

    def line(self) -> str:
        """`2026-12-05T02:10:21+00:00 finished: 2 ran, 6 skipped (teachable run ...)`."""
        ran = sum(phase.status != "skipped" for phase in self.phases)
        skipped = len(self.phases) - ran
        return f"{self.started_at} {self.outcome}: {ran} ran, {skipped} skipped ({self.command})"


def append_invocation(run: RunLayout, invocation: Invocation) -> None:
    """Add one invocation to the end of the run's history."""
    append_jsonl(run.history, invocation.model_dump(mode="json"))


def load_history(run: RunLayout) -> list[Invocation]:
    """Every invocation on record, oldest first; a line that does not read as one is an error
    naming the file and the line."""
    invocations = []
    for number, row in enumerate(read_jsonl(run.history), start=1):
        try:
            invocations.append(Invocation.model_validate(row))
        except ValidationError as error:
            raise ValueError(f"{run.history}, line {number}: {error}") from None
    return invocations
