"""Phase 1's tables and charts: U and L histograms and the U x L scatter with the thresholds
(redrawn by the picker as its sliders move, saved as the threshold plots), what each patch
format does (ELP per format, the routes chosen), how reliable the labels are (test-retest r
of the reliability panel), and how failure snapshots (experiment A) compare with expert
snapshots (experiment B) when Phase 1 labels both.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import altair as alt
import numpy as np
import pandas as pd
from pydantic import BaseModel

from teachable.measure.intervals import (
    RESAMPLES,
    difference_of_means,
    hierarchical_mean,
    wilson,
)
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot, label_frame
from teachable.records.layout import Phase1Layout
from teachable.records.quadrants import Thresholds, quadrant_counts, quantile_table, with_quadrants
from teachable.records.reliability import RELIABLE_LABELS
from teachable.records.store import read_json, write_json
from teachable.reports.charts import save_chart
from teachable.reports.palette import quadrant_colour
from teachable.vocabulary import FORMATS, QUADRANTS, Quadrant


def write_plots(
    rows: Sequence[LabeledSnapshot], thresholds: Thresholds, out: Phase1Layout
) -> list[Path]:
    """Phase 1's threshold plots: U and L histograms, the U x L scatter and the quantiles."""
    return write_threshold_plots(label_frame(rows), thresholds, out)


AXIS_TITLES = {"U": "uncertainty U", "L": "leverage L_local"}
BIN_STEPS = {"U": 0.05, "L": 0.1}  # the histograms' bins, and the grid the axes end on
JITTER = 0.3  # how far the scatter spreads a discrete L, as a share of its values' spacing
LABEL_RANGES = {"U": (0.0, 1.0), "L": (-1.0, 1.0)}  # the values each label can take


def axis_extent(
    values: Sequence[float], column: Literal["U", "L"], spare: float, reach: float = 0.0
) -> list[float]:
    """The values' range widened by `spare` bins on both sides and rounded out to whole bins of
    `column`, starting no lower than the label can go by more than `reach` (the scatter's
    spread): an axis fitted to the data (a label's whole range, -1 to 1 for L, leaves most of a
    chart empty). The top keeps its spare bin: a bin holds the values on its lower edge."""
    if not len(values):
        return list(LABEL_RANGES[column])
    step, least = BIN_STEPS[column], LABEL_RANGES[column][0]
    low, high = min(values) - spare * step, max(values) + spare * step
    return [
        max(round(math.floor(round(low / step, 9)) * step, 9), least - reach),
        round(math.ceil(round(high / step, 9)) * step, 9),
    ]


def value_spacing(values: pd.Series) -> float:
    """The smallest gap between distinct values (1/n for rates over n rollouts); 0 for fewer
    than two distinct values."""
    distinct = np.unique(values.dropna().to_numpy(float))
    return float(np.diff(distinct).min()) if distinct.size > 1 else 0.0


def spread(values: pd.Series, ids: pd.Series, threshold: float) -> pd.Series:
    """Where the scatter draws values that take few distinct levels (L's rates over n rollouts
    pile up otherwise): each moved by up to `JITTER` of their spacing, by an offset fixed by its
    snapshot id (the same in every redraw), and kept on its side of `threshold`, so that no
    point is drawn in another quadrant than its own. For display only: the labels keep their
    values."""
    unit = np.array([zlib.crc32(str(name).encode()) / 0xFFFFFFFF * 2 - 1 for name in ids])
    offset = JITTER * value_spacing(values) * unit
    exact = values.to_numpy(float)
    shown = exact + offset
    crossed = (exact >= threshold) != (shown >= threshold)
    shown[crossed] = exact[crossed] - offset[crossed]
    return pd.Series(shown, index=values.index)


def histogram_chart(
    frame: pd.DataFrame, column: Literal["U", "L"], threshold: float | None
) -> alt.LayerChart:
    """Counts of `column` in bins over the data's range, with the threshold as a red rule."""
    marks = [] if threshold is None else [threshold]
    extent = axis_extent([*frame[column].dropna(), *marks], column, spare=0.5)
    title = AXIS_TITLES[column]
    bars = (
        alt.Chart(frame[[column]].dropna())
        .mark_bar(color="#64748b")
        .encode(
            x=alt.X(
                f"{column}:Q",
                bin=alt.Bin(extent=extent, step=BIN_STEPS[column]),
                scale=alt.Scale(domain=extent),
                title=title,
            ),
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
    """U against L over the data's range, each snapshot coloured by its quadrant, with both
    threshold lines; L's discrete levels spread apart (`spread`), the exact L in the tooltip."""
    points = with_quadrants(frame.dropna(subset=["U", "L"]), u_threshold, l_threshold)
    points["L shown"] = spread(points["L"], points["id"], l_threshold)
    tooltip = [c for c in ("id", "level", "U", "L", "quadrant") if c in points]
    jitter = JITTER * value_spacing(points["L"])
    l_title = AXIS_TITLES["L"] + (f" (points spread ±{jitter:.2g})" if jitter else "")
    u_extent = axis_extent([*points["U"], u_threshold], "U", spare=0.25)
    l_extent = axis_extent([*points["L shown"], l_threshold], "L", spare=0.25, reach=jitter)
    dots = (
        alt.Chart(points)
        .mark_circle(size=40, opacity=0.7)
        .encode(
            x=alt.X("U:Q", scale=alt.Scale(domain=u_extent, nice=False), title=AXIS_TITLES["U"]),
            y=alt.Y("L shown:Q", scale=alt.Scale(domain=l_extent, nice=False), title=l_title),
            color=quadrant_colour(),
            tooltip=tooltip,
        )
    )
    vertical = alt.Chart(pd.DataFrame({"U": [u_threshold]})).mark_rule(color="#111827")
    horizontal = alt.Chart(pd.DataFrame({"L shown": [l_threshold]})).mark_rule(color="#111827")
    counts = quadrant_counts(points["quadrant"])
    title = ", ".join(f"{q.split('_')[0]} {n}" for q, n in counts.items())
    return alt.layer(dots, vertical.encode(x="U:Q"), horizontal.encode(y="L shown:Q")).properties(
        width=360, height=280, title=f"U x L by quadrant ({title})"
    )


def threshold_charts(frame: pd.DataFrame, thresholds: Thresholds) -> dict[str, alt.TopLevelMixin]:
    """The charts of `threshold_plots/` by file stem; L's charts only when L was measured."""
    charts: dict[str, alt.TopLevelMixin] = {"hist_U": histogram_chart(frame, "U", thresholds.U)}
    if frame["L"].notna().any() and thresholds.L is not None:
        charts["hist_L"] = histogram_chart(frame, "L", thresholds.L)
        charts["scatter_U_L"] = scatter_chart(frame, thresholds.U, thresholds.L)
    return charts


def write_threshold_plots(
    frame: pd.DataFrame, thresholds: Thresholds, out: Phase1Layout
) -> list[Path]:
    """Write the charts (PNG and SVG) and the quantile table into the threshold plots."""
    out.threshold_plots.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, chart in threshold_charts(frame, thresholds).items():
        paths += save_chart(chart, out.threshold_plots / stem)
    write_json(out.quantiles, quantile_table(frame))
    return [*paths, out.quantiles]


def _format_colour(column: str) -> alt.Color:
    """The same colour for a supervision format in every chart."""
    scale = alt.Scale(domain=list(FORMATS), range=["#2563eb", "#f59e0b", "#9333ea"])
    return alt.Color(f"{column}:N", scale=scale, title="format")


def elp_frame(rows: Sequence[LabeledSnapshot]) -> pd.DataFrame:
    """One line per (snapshot, supervision format) with its ELP, for rows with CPT labels."""
    return pd.DataFrame(
        [
            {"id": row.id, "quadrant": row.quadrant, "format": name, "ELP": value}
            for row in rows
            if row.cpt is not None
            for name, value in row.cpt.ELP.items()
        ],
        columns=["id", "quadrant", "format", "ELP"],
    )


def elp_chart(frame: pd.DataFrame) -> alt.Chart:
    """How far each patch format moves the success rate over no patch, per format."""
    return (
        alt.Chart(frame)
        .mark_boxplot(extent="min-max", size=28)
        .encode(
            x=alt.X("format:N", sort=list(FORMATS), axis=alt.Axis(labelAngle=0), title=None),
            y=alt.Y("ELP:Q", scale=alt.Scale(domain=[-1, 1]), title="ELP = p_format - p_base"),
            color=_format_colour("format"),
        )
        .properties(width=240, height=200, title="ELP per format")
    )


def route_chart(labels: pd.DataFrame) -> alt.Chart:
    """Which format beats the placebo most (`route_net`), counted per quadrant."""
    frame = labels.dropna(subset=["route_net"]).fillna({"quadrant": "unassigned"})
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("count():Q", title="snapshots"),
            y=alt.Y("quadrant:N", title=None),
            color=_format_colour("route_net"),
        )
        .properties(width=260, height=160, title="Best format over the placebo, per quadrant")
    )


def reliability_table(estimates: dict[str, Estimate]) -> pd.DataFrame:
    """Test-retest r per label with its 95% interval and n (the panel rows carrying it)."""
    return pd.DataFrame(
        [
            {"label": name, "r": e.value, "low": e.low, "high": e.high, "n": e.n}
            for name, e in estimates.items()
        ],
        columns=["label", "r", "low", "high", "n"],
    ).set_index("label")


SOURCES = {"failure": "student", "expert": "expert"}  # experiment -> the snapshots' `source`


EXPERIMENTS = {"failure": "failure (A)", "expert": "expert (B)"}  # as the tables name them


class LabelBySource(BaseModel):
    """One label's mean over each experiment's snapshots, and failure minus expert; each with
    its bootstrap interval and n."""

    failure: Estimate
    expert: Estimate
    failure_minus_expert: Estimate


class SourceComparison(BaseModel):
    """`source_comparison.json`: failure snapshots (experiment A) against expert snapshots
    (experiment B), for U, L_local and ELP_net (means and their difference) and for the
    quadrants (each experiment's share of its snapshots in each quadrant, by Wilson)."""

    labels: dict[str, LabelBySource]
    quadrant_shares: dict[str, dict[Quadrant, Estimate]]

    @classmethod
    def of(
        cls, rows: Sequence[LabeledSnapshot], resamples: int = RESAMPLES, seed: int = 0
    ) -> SourceComparison:
        """The comparison over labeled `rows`; a label or quadrant a row lacks leaves it out."""
        by_source = {
            name: [row for row in rows if row.source == source] for name, source in SOURCES.items()
        }
        labels = {}
        for label, value in RELIABLE_LABELS.items():
            samples = {
                name: np.array([value(row) for row in group if value(row) is not None], float)
                for name, group in by_source.items()
            }
            labels[label] = LabelBySource(
                **{name: hierarchical_mean(x) for name, x in samples.items()},
                failure_minus_expert=difference_of_means(
                    samples["failure"], samples["expert"], resamples, seed
                ),
            )
        shares = {}
        for name, group in by_source.items():
            placed = [row.quadrant for row in group if row.quadrant is not None]
            shares[name] = {q: wilson(placed.count(q), len(placed)) for q in QUADRANTS}
        return cls(labels=labels, quadrant_shares=shares)

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> SourceComparison:
        return cls.model_validate(read_json(path))

    @property
    def both(self) -> bool:
        """Whether each experiment contributed labeled snapshots (else there is no comparison)."""
        return bool(self.labels["U"].failure.n and self.labels["U"].expert.n)

    def label_table(self) -> pd.DataFrame:
        """Per label: each experiment's mean and failure - expert, with interval and n."""
        rows = [
            [label, group, e.value, e.low, e.high, e.n]
            for label, by in self.labels.items()
            for group, e in (
                (EXPERIMENTS["failure"], by.failure),
                (EXPERIMENTS["expert"], by.expert),
                ("failure - expert", by.failure_minus_expert),
            )
        ]
        return pd.DataFrame(rows, columns=["label", "snapshots", "value", "low", "high", "n"])

    def share_table(self) -> pd.DataFrame:
        """Per experiment and quadrant: the share of its snapshots there, by Wilson, and n."""
        rows = [
            [EXPERIMENTS[name], quadrant, e.value, e.low, e.high, e.n]
            for name, shares in self.quadrant_shares.items()
            for quadrant, e in shares.items()
        ]
        return pd.DataFrame(rows, columns=["snapshots", "quadrant", "share", "low", "high", "n"])


def share_chart(comparison: SourceComparison) -> alt.LayerChart:
    """Each experiment's share of snapshots per quadrant, with its Wilson interval."""
    frame = comparison.share_table().dropna(subset=["share"])
    x = alt.X("quadrant:N", scale=alt.Scale(domain=list(QUADRANTS)), axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("snapshots:N")
    scale = alt.Scale(domain=list(EXPERIMENTS.values()), range=["#dc2626", "#2563eb"])
    colour = alt.Color("snapshots:N", scale=scale)
    y = alt.Y("share:Q", scale=alt.Scale(domain=[0, 1]), title="share of the snapshots")
    bars = alt.Chart(frame).mark_bar().encode(x=x, xOffset=offset, y=y, color=colour)
    intervals = (
        alt.Chart(frame)
        .mark_rule(color="#111827")
        .encode(x=x, xOffset=offset, y="low:Q", y2="high:Q")
    )
    return alt.layer(bars, intervals).properties(
        width=380, height=200, title="Quadrant shares: failure (A) and expert (B) snapshots"
    )
