"""Phase 1B's charts and verdict: ELP_net against the micro-training's delta, delta per
quadrant, and the gate's verdict as the notebook shows it.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from teachable.phases.phase1b_cpt_validation import SPEARMAN_TARGET
from teachable.records.quadrants import QUADRANTS
from teachable.reports.phase1 import QUADRANT_COLOURS


def _quadrant_colour() -> alt.Color:
    scale = alt.Scale(domain=list(QUADRANTS), range=list(QUADRANT_COLOURS))
    return alt.Color("quadrant:N", scale=scale, title="quadrant")


def scatter_chart(frame: pd.DataFrame, correlation: dict) -> alt.Chart:
    """ELP_net (the cheap label) against delta (the micro-training utility); a dot's size is
    the number of snapshots at that point of its quadrant (rates take few distinct values)."""
    rho = correlation["spearman"]
    text = "undefined" if rho["rho"] is None else f"{rho['rho']:.2f}"
    if rho["ci_low"] is not None:
        text += f" [{rho['ci_low']:.2f}, {rho['ci_high']:.2f}]"
    verdict = "passed" if correlation["passed"] else "FAILED"
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
            title=f"Spearman rho {text}, n={correlation['n']}: gate {verdict}",
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


def verdict_html(correlation: dict, continuing: bool) -> str:
    """The gate's verdict as a banner for the report: green when it passed, red when it failed,
    saying whether the run stops or goes on regardless."""
    rho, means = correlation["spearman"]["rho"], correlation["mean_delta"]
    q1, q2 = (means[q] for q in ("Q1_highU_highL", "Q2_highU_lowL"))
    facts = (
        f"Spearman rho {'undefined' if rho is None else f'{rho:.3f}'} "
        f"(target {SPEARMAN_TARGET}), n={correlation['n']}; mean delta "
        f"Q1 {'n/a' if q1 is None else f'{q1:+.3f}'}, Q2 {'n/a' if q2 is None else f'{q2:+.3f}'}"
    )
    if correlation["passed"]:
        colour, title, outcome = "#16a34a", "CPT GATE PASSED", "Phase 2 may build on these labels."
    elif continuing:
        colour, title = "#dc2626", "CPT GATE FAILED: CONTINUING ANYWAY"
        outcome = (
            "phase1b.continue_on_failed_gate is true, so the run goes on; every later result "
            "rests on CPT labels that did not predict micro-training."
        )
    else:
        colour, title = "#dc2626", "CPT GATE FAILED"
        outcome = "The runner stops the pipeline after this phase (exit code 1)."
    reasons = "".join(f"<li>{reason}</li>" for reason in correlation["reasons"])
    return (
        f'<div style="border:4px solid {colour};padding:12px;margin:8px 0">'
        f'<div style="color:{colour};font-size:1.6em;font-weight:bold">{title}</div>'
        f"<p>{facts}</p><ul>{reasons}</ul><p><b>{outcome}</b></p></div>"
    )
