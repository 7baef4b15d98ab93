"""Verdicts as the reports show them: one line per criterion with its outcome, the figure, its
interval and n."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from teachable.records.verdicts import Verdict

COLUMNS = [
    "phase",
    "criterion",
    "role",
    "claim",
    "value",
    "low",
    "high",
    "n",
    "side",
    "threshold",
]


def verdict_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One line per verdict: its phase, criterion, role (primary or secondary) and claim, the
    figure with its interval and n, the side and threshold it is read against, the outcome and
    any note."""
    rows = [
        {
            "phase": verdict.phase,
            "criterion": verdict.criterion,
            "role": verdict.role,
            "claim": verdict.claim,
            "value": verdict.estimate.value,
            "low": verdict.estimate.low,
            "high": verdict.estimate.high,
            "n": verdict.estimate.n,
            "side": verdict.side,
            "threshold": verdict.threshold,
            "outcome": verdict.outcome,
            "note": verdict.note,
        }
        for verdict in verdicts
    ]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "outcome", "note"])
    return frame.astype({"value": float, "low": float, "high": float})
