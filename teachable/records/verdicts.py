"""Verdicts: each criterion of the plan with its figure, interval, n and outcome, read and
written here. Every phase that judges a criterion puts its verdicts into the run's one
`verdicts.json`, replacing only its own.

Each verdict is `primary` or `secondary`. The primary family, `PRIMARY_FAMILY`, is named here
and only here: the plan's own criteria, judged together with Holm's adjustment
(`teachable.measure.multiplicity`); every other verdict is secondary, on its own 95% interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError, computed_field

from teachable.records.estimate import Estimate
from teachable.records.store import read_json, write_json

Outcome = Literal["holds", "fails", "inconclusive"]


OUTCOMES: tuple[Outcome, ...] = ("holds", "fails", "inconclusive")


Side = Literal[">", ">=", "<", "<="]


Role = Literal["primary", "secondary"]


# The plan's own criteria as (phase, criterion): 1B's rho gate and Q1 - Q2; Phase 3's Q1 - Q2
# and the do-no-harm check, which is Phase 1A's drift and retention verdicts on the dose every
# matrix cell trains with (the plan's "no catastrophic forgetting" checked before the matrix;
# Phase 3's retention drop per cell stays secondary); Phase 4's R² of L and quadrant accuracy;
# Phase 5's predictor - entropy and entropy - random.
PRIMARY_FAMILY: tuple[tuple[str, str], ...] = (
    ("phase1a", "do-no-harm drift"),
    ("phase1a", "do-no-harm retention"),
    ("phase1b", "rho"),
    ("phase1b", "q1_minus_q2"),
    ("phase3", "Q1_highU_highL - Q2_highU_lowL success"),
    ("phase4", "L_local_r2"),
    ("phase4", "quadrant_accuracy"),
    ("phase5", "predictor_beats_entropy"),
    ("phase5", "entropy_beats_random"),
)


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

    @computed_field
    @property
    def role(self) -> Role:
        """`primary` when the plan's family names this criterion, else `secondary`."""
        return "primary" if (self.phase, self.criterion) in PRIMARY_FAMILY else "secondary"

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


def p_text(p: float | None) -> str:
    """`p=0.012`, `p<0.0001` or `p n/a`."""
    if p is None:
        return "p n/a"
    return "p<0.0001" if p < 1e-4 else f"p={p:.2g}"


class AdjustedVerdict(BaseModel):
    """A primary verdict judged in its family: `p_value` (of "the figure equals its threshold",
    None where its interval gives none) puts it at Holm's step `step` of `family_size` (1 for
    the smallest), read at confidence 1 - alpha / (family_size - step + 1); `estimate` is its
    interval widened to that confidence, and `outcome` is read from it when Holm rejects there
    (`adjusted_p` at most alpha), else `inconclusive`."""

    verdict: Verdict
    p_value: float | None
    adjusted_p: float
    step: int
    family_size: int
    estimate: Estimate
    outcome: Outcome

    def line(self) -> str:
        """`[inconclusive] phase1b rho: 0.410 [0.320, 0.500], n=60 (>= 0.3) holds on its own;
        Holm step 2 of 9 (p=0.048 at the threshold): at 99.38% [0.290, 0.530]`."""
        verdict, estimate = self.verdict, self.estimate
        widened = (
            "no interval" if not estimate.known else f"[{estimate.low:.3f}, {estimate.high:.3f}]"
        )
        return (
            f"[{self.outcome}] {verdict.phase} {verdict.criterion}: {verdict.estimate.text()} "
            f"({verdict.side} {verdict.threshold:g}) {verdict.outcome} on its own; Holm step "
            f"{self.step} of {self.family_size} ({p_text(self.p_value)} at the threshold): "
            f"at {estimate.confidence:.2%} {widened}"
            + (f"; {verdict.note}" if verdict.note else "")
        )


class PrimaryFamily(BaseModel):
    """The primary verdicts of a run, each judged at its Holm step, and the primaries no phase
    has judged yet (they count in the family, never decided); `familywise_error` is the most
    chance there is that any criterion of the family is decided (holds or fails) while its
    figure sits at its threshold."""

    adjusted: list[AdjustedVerdict]
    missing: list[tuple[str, str]]
    familywise_error: float

    @property
    def failing(self) -> list[AdjustedVerdict]:
        return [verdict for verdict in self.adjusted if verdict.outcome == "fails"]


def save_phase_verdicts(path: Path, phase: str, verdicts: Sequence[Verdict]) -> None:
    """Replace `phase`'s verdicts in `verdicts.json`, keeping the other phases' ones."""
    if any(verdict.phase != phase for verdict in verdicts):
        raise ValueError(f"verdicts of another phase handed in as {phase}'s")
    kept = [verdict for verdict in Verdicts.load(path).verdicts if verdict.phase != phase]
    write_json(path, Verdicts(verdicts=[*kept, *verdicts]).model_dump(mode="json"))
