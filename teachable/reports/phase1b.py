"""Phase 1B's charts and verdicts: ELP_net against the micro-training's delta, delta per
quadrant, the gate's figures with their intervals, its outcome as the notebook shows it, and
the comparators: how well each other cheap label tracks delta.
"""

from __future__ import annotations

import html

import altair as alt
import pandas as pd

from teachable.records.cpt_validation import COMPARATORS, SPEARMAN_TARGET, CPTGate
from teachable.reports.phase1 import QUADRANT_COLOURS
from teachable.vocabulary import QUADRANTS


def _quadrant_colour() -> alt.Color:
    scale = alt.Scale(domain=list(QUADRANTS), range=list(QUADRANT_COLOURS))
    return alt.Color("quadrant:N", scale=scale, title="quadrant")


def scatter_chart(frame: pd.DataFrame, correlation: CPTGate) -> alt.Chart:
    """ELP_net (the cheap label) against delta (the micro-training utility); a dot's size is
    the number of snapshots at that point of its quadrant (rates take few distinct values)."""
    return (
        alt.Chart(frame)
        .mark_circle(opacity=0.75)
        .encode(
            x=alt.X("ELP_net:Q", scale=alt.Scale(domain=[-1, 1]), title="ELP_net (CPT label)"),
            y=alt.Y("delta:Q", scale=alt.Scale(domain=[-1, 1]), title="delta (micro-training)"),
            color=_quadrant_colour(),
            size=alt.Size("count():Q", title="snapshots"),
            tooltip=["quadrant", "ELP_net", "delta", "count()"],
        )
        .properties(
            width=380,
            height=280,
            title=f"Spearman rho {correlation.spearman.text(2)}: gate {correlation.outcome}",
        )
    )


def delta_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Delta per snapshot by quadrant, with each quadrant's mean as a black tick."""
    base = alt.Chart(frame).encode(
        x=alt.X(
            "quadrant:N",
            scale=alt.Scale(domain=list(QUADRANTS)),
            axis=alt.Axis(labelAngle=0),
            title=None,
        )
    )
    points = base.mark_circle(size=50, opacity=0.6).encode(
        y=alt.Y("delta:Q", scale=alt.Scale(domain=[-1, 1]), title="delta"),
        color=_quadrant_colour(),
    )
    means = base.mark_tick(color="black", thickness=3, size=36).encode(y="mean(delta):Q")
    return alt.layer(points, means).properties(width=380, height=220, title="Delta by quadrant")


def panel_frame(correlation: CPTGate) -> pd.DataFrame:
    """Spearman's rho and the mean delta, each with its interval and n, over the whole panel
    and per quadrant, and Q1 - Q2."""
    figures = {("all", "rho"): correlation.spearman}
    for quadrant, panel in correlation.per_quadrant.items():
        figures |= {(quadrant, "rho"): panel.spearman, (quadrant, "mean delta"): panel.mean_delta}
    figures[("Q1 - Q2", "mean delta")] = correlation.q1_minus_q2
    rows = [
        [panel, figure, estimate.value, estimate.low, estimate.high, estimate.n]
        for (panel, figure), estimate in figures.items()
    ]
    return pd.DataFrame(rows, columns=["panel", "figure", "value", "low", "high", "n"])


def comparator_frame(correlation: CPTGate) -> pd.DataFrame:
    """Spearman's rho with delta of ELP_net (the gate's label) and of each comparator, then
    the mean change of log pi(a*), each with its interval and n; only ELP_net's rho is
    judged."""
    figures = [("ELP_net", "rho with delta", "gate", correlation.spearman)]
    figures += [
        (label, "rho with delta", "reported", estimate)
        for label, estimate in correlation.comparators.items()
    ]
    if correlation.mean_delta_logp is not None:
        figures.append(("delta_logp", "mean", "reported", correlation.mean_delta_logp))
    rows = [
        [label, figure, role, e.value, e.low, e.high, e.n] for label, figure, role, e in figures
    ]
    columns = ["label", "figure", "role", "value", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns)


LABEL_TITLES = {"ELP_net": "ELP_net (CPT label, the gate)", **COMPARATORS}


def comparator_chart(correlation: CPTGate) -> alt.LayerChart:
    """Each cheap label's rho with delta as a dot with its interval as a bar; the rules mark
    0 and the gate's target. A label whose interval lies above 0 does track utility."""
    frame = comparator_frame(correlation)
    frame = frame[(frame["figure"] == "rho with delta") & frame["value"].notna()].assign(
        title=lambda rows: rows["label"].map(LABEL_TITLES)
    )
    y = alt.Y("title:N", sort=list(frame["title"]), title=None)
    scale = alt.Scale(domain=[-1, 1])
    bars = (
        alt.Chart(frame)
        .mark_rule(strokeWidth=3, color="#64748b")
        .encode(x=alt.X("low:Q", scale=scale, title="Spearman rho with delta"), x2="high:Q", y=y)
    )
    dots = (
        alt.Chart(frame)
        .mark_circle(size=80, color="#111827")
        .encode(x="value:Q", y=y, tooltip=["label", "value", "low", "high", "n"])
    )
    rules = pd.DataFrame({"x": [0.0, SPEARMAN_TARGET]})
    marks = alt.Chart(rules).mark_rule(strokeDash=[4, 4], color="#dc2626").encode(x="x:Q")
    return alt.layer(bars, dots, marks).properties(
        width=380, height=140, title="Which cheap label tracks the micro-training utility"
    )


BANNERS = {
    "holds": ("#16a34a", "CPT GATE HOLDS", "Phase 2 may build on these labels."),
    "inconclusive": (
        "#d97706",
        "CPT GATE INCONCLUSIVE: THE RUN GOES ON",
        "No criterion fails, but not every one holds: the intervals are too wide to tell. "
        "Every later result rests on CPT labels not yet shown to predict micro-training.",
    ),
}


def verdict_html(correlation: CPTGate, continuing: bool) -> str:
    """The gate as a banner for the report: green when it holds, amber when inconclusive (the
    run goes on), red when it fails, saying whether the run stops or goes on regardless; each
    verdict below it with its figure, interval and n."""
    if correlation.outcome in BANNERS:
        colour, title, outcome = BANNERS[correlation.outcome]
    elif continuing:
        colour, title = "#dc2626", "CPT GATE FAILS: CONTINUING ANYWAY"
        outcome = (
            "phase1b.continue_on_failed_gate is true, so the run goes on; every later result "
            "rests on CPT labels that did not predict micro-training."
        )
    else:
        colour, title = "#dc2626", "CPT GATE FAILS"
        outcome = "The runner stops the pipeline after this phase (exit code 1)."
    lines = "".join(f"<li>{html.escape(verdict.line())}</li>" for verdict in correlation.verdicts)
    return (
        f'<div style="border:4px solid {colour};padding:12px;margin:8px 0">'
        f'<div style="color:{colour};font-size:1.6em;font-weight:bold">{title}</div>'
        f"<ul>{lines}</ul><p><b>{outcome}</b></p></div>"
    )
