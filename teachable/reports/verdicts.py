"""Verdicts as the reports show them: one line per criterion with its outcome, the figure, its
interval and n."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd

from teachable.records.verdicts import Outcome, Verdict
from teachable.reports.palette import OUTCOME_COLOURS

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
            "n": verdict.estimate.size(),
            "side": verdict.side,
            "threshold": verdict.threshold,
            "outcome": verdict.outcome,
            "note": verdict.note,
        }
        for verdict in verdicts
    ]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "outcome", "note"])
    return frame.astype({"value": float, "low": float, "high": float})


Banner = tuple[str, str, str]  # colour, title, what the run does next


def gate_html(
    outcome: Outcome,
    verdicts: Sequence[Verdict],
    banners: Mapping[str, Banner],
    gate: str,
    continuing: str | None,
) -> str:
    """A gate as a banner for the report: `banners` for holds and inconclusive; red when it
    fails, with `continuing` (why the run goes on regardless) or the stop; each verdict below
    it with its figure, interval and n."""
    if outcome in banners:
        colour, title, next_step = banners[outcome]
    elif continuing is not None:
        colour, title, next_step = (
            OUTCOME_COLOURS["fails"],
            f"{gate} FAILS: CONTINUING ANYWAY",
            continuing,
        )
    else:
        next_step = "The runner stops the pipeline after this phase (exit code 1)."
        colour, title = OUTCOME_COLOURS["fails"], f"{gate} FAILS"
    lines = "".join(f"<li>{html.escape(verdict.line())}</li>" for verdict in verdicts)
    return (
        f'<div style="border:4px solid {colour};padding:12px;margin:8px 0">'
        f'<div style="color:{colour};font-size:1.6em;font-weight:bold">{title}</div>'
        f"<ul>{lines}</ul><p><b>{next_step}</b></p></div>"
    )
