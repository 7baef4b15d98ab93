"""Verdicts: each criterion of the plan with its figure, interval, n and outcome, read and
written here. Every phase that judges a criterion puts its verdicts into the run's one
`verdicts.json`, replacing only its own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from teachable.records.estimate import Estimate
from teachable.records.store import read_json, write_json

Outcome = Literal["holds", "fails", "inconclusive"]


OUTCOMES: tuple[Outcome, ...] = ("holds", "fails", "inconclusive")


Side = Literal[">", ">=", "<", "<="]


class Verdict(BaseModel):
    """One criterion: `claim` holds when the figure's whole interval lies on its side of
    `threshold`, fails when the whole interval lies on the other side, else is inconclusive."""

    phase: str
    criterion: str
    claim: str
    side: Side
    threshold: float
    estimate: Estimate
    outcome: Outcome
    note: str = ""

    def line(self) -> str:
        """`[holds] phase1b rho: 0.41 [0.33, 0.52], n=60 (>= 0.3)`."""
        return (
            f"[{self.outcome}] {self.phase} {self.criterion}: {self.estimate.text()} "
            f"({self.side} {self.threshold:g})" + (f"; {self.note}" if self.note else "")
        )


class Verdicts(BaseModel):
    """`verdicts.json`: every verdict of a run, in the order the phases wrote them."""

    verdicts: list[Verdict] = []

    @classmethod
    def load(cls, path: Path) -> Verdicts:
        """The run's verdicts; none when no phase has judged anything yet."""
        path = Path(path)
        if not path.is_file():
            return cls()
        try:
            return cls.model_validate(read_json(path))
        except ValidationError as error:
            raise ValueError(f"{path}: {error}") from None

    def of(self, phase: str) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.phase == phase]


def save_phase_verdicts(path: Path, phase: str, verdicts: Sequence[Verdict]) -> None:
    """Replace `phase`'s verdicts in `verdicts.json`, keeping the other phases' ones."""
    if any(verdict.phase != phase for verdict in verdicts):
        raise ValueError(f"verdicts of another phase handed in as {phase}'s")
    kept = [verdict for verdict in Verdicts.load(path).verdicts if verdict.phase != phase]
    write_json(path, Verdicts(verdicts=[*kept, *verdicts]).model_dump(mode="json"))
