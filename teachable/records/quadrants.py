"""Quadrants of the U x L plane: thresholds and assignment.

A snapshot is high-U when `U >= U threshold` and high-L when `L >= L threshold` (a value on a
threshold counts as high). Thresholds are automatic (quantile cuts of the labeled snapshots) or
chosen (by the notebook's picker, the command line or fixed parameters); later phases take the
chosen file when there is one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from teachable.records.layout import Phase1Layout
from teachable.records.store import read_json, write_json
from teachable.vocabulary import QUADRANTS, Quadrant

QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class Thresholds(BaseModel):
    """Where the U x L plane is cut; `L` is None when leverage was not measured."""

    model_config = ConfigDict(extra="forbid")

    U: float
    L: float | None
    source: Literal["auto", "parameters", "picker", "command line"]
    U_quantile: float | None = None
    L_quantile: float | None = None


def quadrant_of(u: float, leverage: float, u_threshold: float, l_threshold: float) -> Quadrant:
    """The quadrant of one (U, L) point; a value on a threshold counts as high."""
    high_u, high_l = u >= u_threshold, leverage >= l_threshold
    if high_u:
        return "Q1_highU_highL" if high_l else "Q2_highU_lowL"
    return "Q4_lowU_highL" if high_l else "Q3_lowU_lowL"


def _quantile_cut(values: Sequence[float], quantile: float) -> float:
    """The observed value whose share of values below it is closest to `quantile` (the lower one
    on a tie). Unlike a plain quantile it respects runs of equal values: with most L = 0 at a few
    rollouts, the median is 0 and, as values on a threshold count as high, would leave no
    snapshot low; the cut is then the smallest L above 0."""
    ordered = np.sort(np.asarray(values, dtype=float))
    candidates = np.unique(ordered)
    share_below = np.searchsorted(ordered, candidates, side="left") / len(ordered)
    distance = np.round(np.abs(share_below - quantile), 12)  # equal distances tie exactly
    return float(candidates[np.argmin(distance)])


def auto_thresholds(
    u_values: Sequence[float], l_values: Sequence[float], u_quantile: float, l_quantile: float
) -> Thresholds:
    """Thresholds that put a `u_quantile` (`l_quantile`) share of the labeled snapshots below
    the U (L) cut, as near as ties allow."""
    if not len(u_values):
        raise ValueError("automatic thresholds need at least one labeled snapshot")
    return Thresholds(
        U=round(_quantile_cut(u_values, u_quantile), 6),
        L=round(_quantile_cut(l_values, l_quantile), 6) if len(l_values) else None,
        source="auto",
        U_quantile=u_quantile,
        L_quantile=l_quantile if len(l_values) else None,
    )


def quadrant_counts(quadrants: Iterable[Quadrant | None]) -> dict[Quadrant, int]:
    """How many snapshots fall in each quadrant (all four listed, unassigned ones left out)."""
    counts = dict.fromkeys(QUADRANTS, 0)
    for quadrant in quadrants:
        if quadrant is not None:
            counts[quadrant] += 1
    return counts


def small_quadrants(counts: dict[Quadrant, int], minimum: int) -> list[str]:
    """A warning for each quadrant with fewer than `minimum` snapshots, also issued through
    `warnings` so a notebook shows it."""
    messages = [
        f"{quadrant} has {count} snapshot(s), fewer than min_per_quadrant={minimum}: "
        "collect more rollouts or move the thresholds"
        for quadrant, count in counts.items()
        if count < minimum
    ]
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return messages


def save_thresholds(path: Path, thresholds: Thresholds) -> None:
    write_json(path, thresholds.model_dump(mode="json"))


def load_thresholds(phase1: Phase1Layout) -> Thresholds:
    """The chosen thresholds (`quadrant_thresholds.json`) when present, else the automatic."""
    for path in (phase1.thresholds_chosen, phase1.thresholds_auto):
        if path.is_file():
            try:
                return Thresholds.model_validate(read_json(path))
            except ValueError as error:
                raise ValueError(f"{path}: not a thresholds file ({error})") from None
    raise FileNotFoundError(
        f"{phase1.folder} holds neither {phase1.thresholds_chosen.name} nor "
        f"{phase1.thresholds_auto.name}"
    )


def quantile_table(frame: pd.DataFrame) -> dict[str, dict[str, float] | None]:
    """U and L at the quantiles 0.1 ... 0.9 (`quantiles.json`); None for a column with no value."""
    table = {}
    for column in ("U", "L"):
        values = frame[column].dropna() if column in frame else pd.Series(dtype=float)
        table[column] = (
            {f"{q:.1f}": round(float(np.quantile(values, q)), 6) for q in QUANTILE_LEVELS}
            if len(values)
            else None
        )
    return table


def with_quadrants(frame: pd.DataFrame, u_threshold: float, l_threshold: float) -> pd.DataFrame:
    """`frame` (columns U and L) with a `quadrant` column for the given thresholds."""
    quadrants = [
        None if pd.isna(leverage) else quadrant_of(u, leverage, u_threshold, l_threshold)
        for u, leverage in zip(frame["U"], frame["L"], strict=True)
    ]
    return frame.assign(quadrant=quadrants)
