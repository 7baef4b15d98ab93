"""Verdicts as the reports show them: one line per criterion with its outcome, the figure, its
interval and n."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from teachable.records.verdicts import Verdict

COLUMNS = ["phase", "criterion", "outcome", "value", "low", "high", "n", "threshold", "claim"]


def verdict_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One line per verdict: phase, criterion, outcome, figure with its interval and n, the
    threshold it is read against (`side threshold`), and the claim in words."""
    return pd.DataFrame(
        [
            {
                "phase": v.phase,
                "criterion": v.criterion,
                "outcome": v.outcome,
                "value": v.estimate.value,
                "low": v.estimate.low,
                "high": v.estimate.high,
                "n": v.estimate.n,
                "threshold": f"{v.side} {v.threshold:g}",
                "claim": v.claim + (f" ({v.note})" if v.note else ""),
            }
            for v in verdicts
        ],
        columns=COLUMNS,
    ).astype({"value": float, "low": float, "high": float})
