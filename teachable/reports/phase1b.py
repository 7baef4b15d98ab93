"""Phase 1B's charts and verdicts: ELP_net against the micro-training's utility (delta vs its
wrong-target control), the raw and the control-corrected delta per quadrant, the gate's figures
with their intervals, its outcome as the notebook shows it, and the comparators: how well each
other cheap label tracks the utility.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from teachable.records.cpt_validation import (
    COMPARATORS,
    RAW,
    SPEARMAN_TARGET,
    UTILITY,
    CPTGate,
)
from teachable.reports.palette import OUTCOME_COLOURS, quadrant_colour
from teachable.reports.verdicts import gate_html
from teachable.vocabulary import QUADRANTS


def scatter_chart(frame: pd.DataFrame, correlation: CPTGate) -> alt.Chart:
    """ELP_net (the cheap label) against delta_vs_control (the micro-training utility); a dot's
    size is the number of snapshots at that point of its quadrant (rates take few distinct
    values). The title gives rho beside the raw delta's."""
    title = (
        f"Spearman rho {correlation.spearman.text(2)} "
        f"(raw delta {correlation.raw_spearman.text(2)}): gate {correlation.outcome}"
    )
    return (
        alt.Chart(frame)
        .mark_circle(opacity=0.75)
        .encode(
            x=alt.X("ELP_net:Q", scale=alt.Scale(domain=[-1, 1]), title="ELP_net (CPT label)"),
            y=alt.Y(
                f"{UTILITY}:Q",
                scale=alt.Scale(domain=[-1, 1]),
                title="delta vs control (micro-training)",
            ),
            color=quadrant_colour(),
            size=alt.Size("count():Q", title="snapshots"),
            tooltip=["quadrant", "ELP_net", UTILITY, RAW, "count()"],
        )
        .properties(width=380, height=280, title=title)
    )


UTILITIES = (RAW, UTILITY)  # the raw delta, then the gate's control-corrected one


def delta_chart(frame: pd.DataFrame, correlation: CPTGate) -> alt.LayerChart:
    """The raw and the control-corrected delta per snapshot by quadrant, side by side, with
    each quadrant's mean as a black tick on its 95% interval (the gate's figures)."""
    points = frame.melt(id_vars=["quadrant"], value_vars=list(UTILITIES), var_name="utility")
    figures = panel_frame(correlation)
    means = figures[(figures["figure"] == "mean") & figures["panel"].isin(QUADRANTS)].rename(
        columns={"panel": "quadrant"}
    )
    x = alt.X(
        "quadrant:N",
        scale=alt.Scale(domain=list(QUADRANTS)),
        axis=alt.Axis(labelAngle=0),
        title=None,
    )
    offset = alt.XOffset("utility:N", scale=alt.Scale(domain=list(UTILITIES)))
    y = alt.Y("value:Q", scale=alt.Scale(domain=[-1, 1]), title="delta")
    dots = (
        alt.Chart(points)
        .mark_circle(size=40, opacity=0.6)
        .encode(
            x=x,
            xOffset=offset,
            y=y,
            color=alt.Color("utility:N", scale=alt.Scale(domain=list(UTILITIES))),
        )
    )
    intervals = (
        alt.Chart(means)
        .mark_rule(color="black", strokeWidth=2)
        .encode(x=x, xOffset=offset, y="low:Q", y2="high:Q")
    )
    ticks = (
        alt.Chart(means)
        .mark_tick(color="black", thickness=3, size=16)
        .encode(
            x=x, xOffset=offset, y=y, tooltip=["quadrant", "utility", "value", "low", "high", "n"]
        )
    )
    return alt.layer(dots, intervals, ticks).properties(
        width=380, height=220, title="Raw and control-corrected delta by quadrant"
    )


def panel_frame(correlation: CPTGate) -> pd.DataFrame:
    """Spearman's rho with ELP_net and the mean, each with its interval and n, of the utility
    (delta_vs_control) and of the raw delta: over the whole panel, per quadrant (rho of the
    utility alone), and Q1 - Q2."""
    figures = [
        ("all", "rho", UTILITY, correlation.spearman),
        ("all", "rho", RAW, correlation.raw_spearman),
    ]
    for quadrant, panel in correlation.per_quadrant.items():
        figures += [
            (quadrant, "rho", UTILITY, panel.spearman),
            (quadrant, "mean", UTILITY, panel.mean_delta_vs_control),
            (quadrant, "mean", RAW, panel.mean_delta),
        ]
    figures += [
        ("Q1 - Q2", "mean", UTILITY, correlation.q1_minus_q2),
        ("Q1 - Q2", "mean", RAW, correlation.raw_q1_minus_q2),
    ]
    rows = [
        [panel, figure, utility, estimate.value, estimate.low, estimate.high, estimate.n]
        for panel, figure, utility, estimate in figures
    ]
    columns = ["panel", "figure", "utility", "value", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns)


RHO = f"rho with {UTILITY}"  # the comparators' figure


def comparator_frame(correlation: CPTGate) -> pd.DataFrame:
    """Spearman's rho with delta_vs_control of ELP_net (the gate's label) and of each
    comparator, then the mean change of log pi(a*) from the true and from the control
    micro-training, each with its interval and n; only ELP_net's rho is judged."""
    figures = [("ELP_net", RHO, "gate", correlation.spearman)]
    figures += [
        (label, RHO, "reported", estimate) for label, estimate in correlation.comparators.items()
    ]
    changes = {
        "delta_logp": correlation.mean_delta_logp,
        "control_delta_logp": correlation.mean_control_delta_logp,
    }
    figures += [
        (label, "mean", "reported", estimate)
        for label, estimate in changes.items()
        if estimate is not None
    ]
    rows = [
        [label, figure, role, e.value, e.low, e.high, e.n] for label, figure, role, e in figures
    ]
    columns = ["label", "figure", "role", "value", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns)


def noise_frame(correlation: CPTGate) -> pd.DataFrame:
    """What noise allows rho to show: the reliability of ELP_net (test-retest) and of the
    utility (split halves), the ceiling they set, rho and rho disattenuated by the ceiling
    (labeled as such, never judged); each with its interval and n where it has one."""
    figures = [(f"reliability of {label}", e) for label, e in correlation.reliability.items()]
    figures += [("rho", correlation.spearman), ("rho disattenuated", correlation.disattenuated)]
    rows = [
        [name, None, None, None, None] if e is None else [name, e.value, e.low, e.high, e.n]
        for name, e in figures
    ]
    rows.insert(
        len(correlation.reliability), ["ceiling on rho", correlation.ceiling, None, None, None]
    )
    columns = ["figure", "value", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns)


LABEL_TITLES = {"ELP_net": "ELP_net (CPT label, the gate)", **COMPARATORS}


def comparator_chart(correlation: CPTGate) -> alt.LayerChart:
    """Each cheap label's rho with delta_vs_control as a dot with its interval as a bar; the
    rules mark 0 and the gate's target. A label whose interval lies above 0 does track
    utility."""
    frame = comparator_frame(correlation)
    frame = frame[(frame["figure"] == RHO) & frame["value"].notna()].assign(
        title=lambda rows: rows["label"].map(LABEL_TITLES)
    )
    y = alt.Y("title:N", sort=list(frame["title"]), title=None)
    scale = alt.Scale(domain=[-1, 1])
    bars = (
        alt.Chart(frame)
        .mark_rule(strokeWidth=3, color="#64748b")
        .encode(x=alt.X("low:Q", scale=scale, title=f"Spearman {RHO}"), x2="high:Q", y=y)
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
    "holds": (OUTCOME_COLOURS["holds"], "CPT GATE HOLDS", "Phase 2 may build on these labels."),
    "inconclusive": (
        OUTCOME_COLOURS["inconclusive"],
        "CPT GATE INCONCLUSIVE: THE RUN GOES ON",
        "No criterion fails, but not every one holds: the intervals are too wide to tell. "
        "Every later result rests on CPT labels not yet shown to predict micro-training.",
    ),
}


def verdict_html(correlation: CPTGate, continuing: bool) -> str:
    """The gate as a banner for the report (`reports.verdicts.gate_html`)."""
    why = (
        "phase1b.continue_on_failed_gate is true, so the run goes on; every later result "
        "rests on CPT labels that did not predict micro-training."
    )
    return gate_html(
        correlation.outcome, correlation.verdicts, BANNERS, "CPT GATE", why if continuing else None
    )
