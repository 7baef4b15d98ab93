"""Phase 1A's tables and charts: the dose-response curve (specificity and drift against dose,
per kind of training and format), the chosen doses with their check, and the gate's banner."""

from __future__ import annotations

import altair as alt
import pandas as pd

from teachable.measure.gains import estimate_columns
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.dose import DoseCalibration
from teachable.reports.palette import OUTCOME_COLOURS
from teachable.reports.verdicts import gate_html

FIGURES = ("specificity", "drift", "target_change", "expert_change")


def _probe_columns(probe: AdapterProbe) -> dict:
    columns: dict = {"n_probes": probe.n_probes, "n_trained": probe.n_trained}
    for figure in FIGURES:
        columns |= estimate_columns(figure, getattr(probe, figure))
    return columns


def curve_frame(calibration: DoseCalibration) -> pd.DataFrame:
    """One line per grid point: kind, format, the dose, and each figure with interval and n."""
    return pd.DataFrame(
        [
            {
                "kind": point.kind,
                "format": point.format,
                "dose": point.dose.label(),
                **point.dose.model_dump(),
                "trainings": point.n_trainings,
                "within_budget": point.within_budget,
                **_probe_columns(point.probe),
            }
            for point in calibration.points
        ]
    )


def choice_frame(calibration: DoseCalibration) -> pd.DataFrame:
    """One line per kind and format: the dose it trains with, where it comes from, and its
    figures on the check half (and at retention states, for the demo cell)."""
    rows = []
    for choice in calibration.chosen:
        row = {"kind": choice.kind, "format": choice.format, "source": choice.source}
        row |= {"dose": choice.dose.label(), **_probe_columns(choice.check)}
        if choice.retention is not None:
            row |= estimate_columns("retention_expert_change", choice.retention.expert_change)
        rows.append(row)
    return pd.DataFrame(rows)


def dose_response_chart(calibration: DoseCalibration) -> alt.VConcatChart:
    """Specificity (top) and drift (bottom) of every dose with their intervals, one column per
    kind and format; the dashed rules mark 0 and the drift budget, a filled dot is within it."""
    frame = curve_frame(calibration).assign(panel=lambda f: f["kind"] + " · " + f["format"])
    doses = list(dict.fromkeys(frame["dose"]))

    def panel(figure: str, rule: float, title: str) -> alt.FacetChart:
        x = alt.X("dose:N", sort=doses, title="dose (learning rate, steps, anchor weight)")
        y = alt.Y(f"{figure}:Q", title=title)
        bars = (
            alt.Chart()
            .mark_rule(color="#64748b")
            .encode(x=x, y=f"{figure}_low:Q", y2=f"{figure}_high:Q")
        )
        dots = (
            alt.Chart()
            .mark_point(size=70, filled=True)
            .encode(
                x=x,
                y=y,
                shape=alt.Shape("within_budget:N", title="within drift budget"),
                tooltip=[
                    "kind",
                    "format",
                    "dose",
                    figure,
                    f"{figure}_low",
                    f"{figure}_high",
                    f"{figure}_n",
                ],
            )
        )
        line = alt.Chart().mark_rule(strokeDash=[4, 4], color="#dc2626").encode(y=alt.datum(rule))
        return (
            alt.layer(bars, dots, line, data=frame)
            .properties(width=220, height=160)
            .facet(column=alt.Column("panel:N", title=None))
        )

    return alt.vconcat(
        panel("specificity", 0.0, "specificity (nats)"),
        panel("drift", calibration.drift_budget, "drift: KL per probe state (nats)"),
        title="Dose response: specificity and drift of every dose",
    )


BANNERS = {
    "holds": (
        OUTCOME_COLOURS["holds"],
        "DOSE GATE HOLDS",
        "Phases 1B, 2 and 5 train with the chosen doses.",
    ),
    "inconclusive": (
        OUTCOME_COLOURS["inconclusive"],
        "DOSE GATE INCONCLUSIVE: THE RUN GOES ON",
        "A dose is specific, but do-no-harm is not shown either way: its intervals are too wide.",
    ),
}


def verdict_html(calibration: DoseCalibration, continuing: bool) -> str:
    """The gate as a banner for the report (`reports.verdicts.gate_html`)."""
    why = (
        "training.continue_on_failed_gate is true, so the run goes on with an instrument not "
        "shown to teach its states without harm."
    )
    return gate_html(
        calibration.outcome, calibration.verdicts, BANNERS, "DOSE GATE", why if continuing else None
    )
