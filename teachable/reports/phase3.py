"""Phase 3's charts: the transfer heatmap (train quadrant x evaluation quadrant) and the
reliability-retention frontier, each figure with its interval.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from teachable.records.evaluation import RETENTION_DROP_LIMIT
from teachable.vocabulary import FORMATS, QUADRANTS


def transfer_heatmap(matrix: pd.DataFrame) -> alt.FacetChart:
    """Gain over the base per train quadrant (rows) and eval quadrant (columns), one panel per
    format and one for all formats together; blue is a gain, red a loss, the interval in the
    tooltip."""
    base = alt.Chart(matrix).encode(
        x=alt.X("eval_quadrant:N", title="evaluated on", sort=list(QUADRANTS)),
        y=alt.Y("train_quadrant:N", title="trained on", sort=list(QUADRANTS)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("gain:Q", scale=alt.Scale(scheme="redblue", domainMid=0), title="gain"),
        tooltip=[
            "cell",
            "train_quadrant",
            "eval_quadrant",
            "seeds",
            alt.Tooltip("gain:Q", format=".2f"),
            alt.Tooltip("gain_low:Q", format=".2f"),
            alt.Tooltip("gain_high:Q", format=".2f"),
            "gain_n",
        ],
    )
    labels = (
        base.transform_filter("isValid(datum.gain)")
        .mark_text(fontSize=11)
        .encode(text=alt.Text("gain:Q", format="+.2f"))
    )
    return (
        alt.layer(cells, labels)
        .properties(width=180, height=180)
        .facet(column=alt.Column("format:N", title=None, sort=[*FORMATS, "mean"]))
    )


def frontier_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Gain on held-out tasks against the retention drop per cell, with their 95% intervals as
    bars; the Pareto cells (most gain for the least forgetting) are joined by a line."""
    base = alt.Chart(table.dropna(subset=["gain", "drop"]))
    x = alt.X("drop:Q", title="retention drop (lower is better)")
    y = alt.Y("gain:Q", title="success gain over base")
    points = base.mark_point(filled=True, size=70).encode(
        x=x,
        y=y,
        color=alt.Color(
            "pareto:N",
            title="Pareto",
            scale=alt.Scale(domain=[False, True], range=["#9ca3af", "#16a34a"]),
        ),
        shape=alt.Shape("format:N"),
        tooltip=["cell", "seeds", "gain", "gain_low", "gain_high", "drop", "drop_low", "drop_high"],
    )
    gain_bars = base.mark_rule(color="#9ca3af").encode(x=x, y="gain_low:Q", y2="gain_high:Q")
    drop_bars = base.mark_rule(color="#9ca3af").encode(y=y, x="drop_low:Q", x2="drop_high:Q")
    line = (
        base.transform_filter("datum.pareto")
        .mark_line(color="#16a34a")
        .encode(x=x, y=y, order="drop:Q")
    )
    labels = base.mark_text(align="left", dx=6, fontSize=9).encode(x=x, y=y, text="cell:N")
    limit = (
        alt.Chart(pd.DataFrame({"x": [RETENTION_DROP_LIMIT]}))
        .mark_rule(strokeDash=[4, 4], color="#dc2626")
        .encode(x="x:Q")
    )
    return alt.layer(gain_bars, drop_bars, line, points, labels, limit).properties(
        width=420, height=300
    )
