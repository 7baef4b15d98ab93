"""Phase 1B's records: one micro-trained panel snapshot (`MicroResult`, a line of
`micro_training.jsonl`), the panel as the frame the gate and the charts read, and the gate
itself (`CPTGate`, `cpt_correlation.json`) with its target and the comparators it reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel

from teachable.records.estimate import Estimate
from teachable.records.store import read_json
from teachable.records.verdicts import Outcome, Verdict
from teachable.vocabulary import Format, Quadrant

PHASE = "phase1b"  # the verdicts' phase in the run's verdicts.json


SPEARMAN_TARGET = 0.3


Comparator = Literal["L_local", "U", "delta_logp"]


COMPARATORS: dict[Comparator, str] = {
    "L_local": "leverage L_local (Phase 1 rollouts)",
    "U": "the student's uncertainty U at the snapshot",
    "delta_logp": "change of log pi(a*) at the snapshot caused by the micro-training",
}


class MicroResult(BaseModel):
    """One panel snapshot: its labels, the format trained on, the real utility (`delta`), and
    the policy's log-probability of the expert action at the snapshot before and after."""

    id: str
    quadrant: Quadrant
    level: str
    ELP_net: float
    route_net: Format
    U: float
    L_local: float | None
    format: Format
    target: str
    before: float
    after: float
    delta: float
    logp_before: float
    logp_after: float
    delta_logp: float
    n_rollouts: int
    losses: list[float]
    seconds: float
    key: str


def result_frame(results: Sequence[MicroResult]) -> pd.DataFrame:
    """One line per panel snapshot, as the gate, its comparators and the charts read it."""
    columns = [
        "id",
        "quadrant",
        "level",
        "ELP_net",
        "route_net",
        "U",
        "L_local",
        "format",
        "before",
        "after",
        "delta",
        "logp_before",
        "logp_after",
        "delta_logp",
    ]
    frame = pd.DataFrame([r.model_dump(include=set(columns)) for r in results])
    return frame.reindex(columns=columns).astype({"L_local": float})


class QuadrantPanel(BaseModel):
    """One quadrant of the panel: rho of ELP_net and delta within it, and its mean delta."""

    spearman: Estimate
    mean_delta: Estimate


class CPTGate(BaseModel):
    """`cpt_correlation.json`: the gate's figures with their intervals and n, its two verdicts,
    and its outcome: `fails` when a verdict fails, `holds` when both hold, else `inconclusive`.
    `comparators` (rho of each other cheap label with delta) and `mean_delta_logp` are
    reported beside it and never judged."""

    n: int
    spearman: Estimate
    per_quadrant: dict[Quadrant, QuadrantPanel]
    q1_minus_q2: Estimate
    verdicts: list[Verdict]
    outcome: Outcome
    comparators: dict[Comparator, Estimate] = {}
    mean_delta_logp: Estimate | None = None

    @classmethod
    def load(cls, path: Path) -> CPTGate:
        return cls.model_validate(read_json(path))
