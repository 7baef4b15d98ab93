"""Quadrants of the U x L plane: thresholds, assignment, and the charts to choose them by.

A snapshot is high-U when `U >= U threshold` and high-L when `L >= L threshold` (a value on a
threshold counts as high). Thresholds are automatic (quantile cuts of the labeled snapshots, saved
as `quadrant_thresholds_auto.json`) or chosen (by the notebook's picker, the command line or
fixed parameters, saved as `quadrant_thresholds.json`); later phases take the chosen file when
there is one. The chart builders take thresholds as arguments, so the picker redraws them as its
sliders move.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import altair as alt
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from teachable.reports import save_chart
from teachable.store import read_json, write_json

Quadrant = Literal["Q1_highU_highL", "Q2_highU_lowL", "Q3_lowU_lowL", "Q4_lowU_highL"]
QUADRANTS: tuple[Quadrant, ...] = (
    "Q1_highU_highL",
    "Q2_highU_lowL",
    "Q3_lowU_lowL",
    "Q4_lowU_highL",
)
QUADRANT_COLOURS = ("#16a34a", "#dc2626", "#6b7280", "#2563eb")
CHOSEN_FILE = "quadrant_thresholds.json"
AUTO_FILE = "quadrant_thresholds_auto.json"
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


def load_thresholds(phase1_dir: Path) -> Thresholds:
    """The chosen thresholds (`quadrant_thresholds.json`) when present, else the automatic."""
    for name in (CHOSEN_FILE, AUTO_FILE):
        path = Path(phase1_dir) / name
        if path.is_file():
            try:
                return Thresholds.model_validate(read_json(path))
            except ValueError as error:
                raise ValueError(f"{path}: not a thresholds file ({error})") from None
    raise FileNotFoundError(f"{phase1_dir} holds neither {CHOSEN_FILE} nor {AUTO_FILE}")


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


def histogram_chart(
    frame: pd.DataFrame, column: Literal["U", "L"], threshold: float | None
) -> alt.LayerChart:
    """Counts of `column` in bins, with the threshold as a red rule."""
    extent = [0.0, 1.0] if column == "U" else [-1.0, 1.0]
    step = 0.05 if column == "U" else 0.1
    title = "uncertainty U" if column == "U" else "leverage L_local"
    bars = (
        alt.Chart(frame[[column]].dropna())
        .mark_bar(color="#64748b")
        .encode(
            x=alt.X(f"{column}:Q", bin=alt.Bin(extent=extent, step=step), title=title),
            y=alt.Y("count():Q", title="snapshots"),
        )
    )
    layers = [bars]
    if threshold is not None:
        rule = pd.DataFrame({column: [threshold]})
        layers.append(
            alt.Chart(rule).mark_rule(color="#dc2626", strokeWidth=2).encode(x=f"{column}:Q")
        )
    subtitle = "" if threshold is None else f" (threshold {threshold:.3f})"
    return alt.layer(*layers).properties(width=320, height=180, title=f"{title}{subtitle}")


def scatter_chart(frame: pd.DataFrame, u_threshold: float, l_threshold: float) -> alt.LayerChart:
    """U against L, each snapshot coloured by its quadrant, with both threshold lines."""
    points = with_quadrants(frame.dropna(subset=["U", "L"]), u_threshold, l_threshold)
    tooltip = [c for c in ("id", "level", "U", "L", "quadrant") if c in points]
    dots = (
        alt.Chart(points)
        .mark_circle(size=40, opacity=0.7)
        .encode(
            x=alt.X("U:Q", scale=alt.Scale(domain=[0, 1]), title="uncertainty U"),
            y=alt.Y("L:Q", scale=alt.Scale(domain=[-1, 1]), title="leverage L_local"),
            color=alt.Color(
                "quadrant:N", scale=alt.Scale(domain=list(QUADRANTS), range=list(QUADRANT_COLOURS))
            ),
            tooltip=tooltip,
        )
    )
    vertical = alt.Chart(pd.DataFrame({"U": [u_threshold]})).mark_rule(color="#111827")
    horizontal = alt.Chart(pd.DataFrame({"L": [l_threshold]})).mark_rule(color="#111827")
    counts = quadrant_counts(points["quadrant"])
    title = ", ".join(f"{q.split('_')[0]} {n}" for q, n in counts.items())
    return alt.layer(dots, vertical.encode(x="U:Q"), horizontal.encode(y="L:Q")).properties(
        width=360, height=280, title=f"U x L by quadrant ({title})"
    )


def threshold_charts(frame: pd.DataFrame, thresholds: Thresholds) -> dict[str, alt.TopLevelMixin]:
    """The charts of `threshold_plots/` by file stem; L's charts only when L was measured."""
    charts: dict[str, alt.TopLevelMixin] = {"hist_U": histogram_chart(frame, "U", thresholds.U)}
    if frame["L"].notna().any() and thresholds.L is not None:
        charts["hist_L"] = histogram_chart(frame, "L", thresholds.L)
        charts["scatter_U_L"] = scatter_chart(frame, thresholds.U, thresholds.L)
    return charts


def write_threshold_plots(frame: pd.DataFrame, thresholds: Thresholds, folder: Path) -> list[Path]:
    """Write the charts (PNG and SVG) and `quantiles.json` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, chart in threshold_charts(frame, thresholds).items():
        paths += save_chart(chart, folder / stem)
    write_json(folder / "quantiles.json", quantile_table(frame))
    return [*paths, folder / "quantiles.json"]
