"""Phase 4's tables and charts: each metric against the plan's target, the ranking curves,
predicted against true values, and the quadrant confusion matrix.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
from sklearn.metrics import confusion_matrix

from teachable.phases.phase4_predictor import REGRESSION_TARGETS, PredictorResult
from teachable.records.quadrants import QUADRANTS

METRIC_NAMES = {
    "U_r2": "U R²",
    "L_local_r2": "L_local R²",
    "ELP_net_r2": "ELP_net R²",
    "quadrant_accuracy": "quadrant accuracy",
    "quadrant_macro_f1": "quadrant macro F1",
}


RANKING_METRICS = {"ndcg": "NDCG", "precision": "Precision"}


RANKINGS = ("predictor", "entropy", "random")


def _verdict(passed: bool | None, required: str | None) -> str:
    if required is None:
        return "no target"
    if passed is None:
        return "not measured"
    return "pass" if passed else "fail"


def metrics_table(result: PredictorResult) -> pd.DataFrame:
    """Every test metric of a training result beside the plan's target and a verdict: R² per
    head, quadrant accuracy and macro F1, then predictor NDCG@K and Precision@K against the
    entropy ranking's."""
    rows = []
    for key, name in METRIC_NAMES.items():
        metric = result.metrics[key]
        verdict = _verdict(metric["passed"], metric["required"])
        rows.append([name, metric["value"], metric["required"] or "—", metric["n"], verdict])
    ranking = result.ranking
    for k, entry in ranking["by_k"].items():
        for metric, name in RANKING_METRICS.items():
            scores = entry[metric]
            required = f"> entropy ({scores['entropy']:.3f})"
            verdict = _verdict(scores["beats_entropy"], required)
            rows.append([f"{name}@{k}", scores["predictor"], required, ranking["n"], verdict])
    if not ranking["by_k"]:
        rows.append(["ranking", None, "> entropy", ranking["n"], "not measured"])
    return pd.DataFrame(rows, columns=["metric", "value", "required", "n", "verdict"])


def ranking_frame(result: PredictorResult) -> pd.DataFrame:
    """One line per (K, ranking metric, ranking): the predictor's, the entropy's and random."""
    rows = [
        {"K": int(k), "metric": f"{name}@K", "ranking": ranking, "value": entry[metric][ranking]}
        for k, entry in result.ranking["by_k"].items()
        for metric, name in RANKING_METRICS.items()
        for ranking in RANKINGS
    ]
    return pd.DataFrame(rows, columns=["K", "metric", "ranking", "value"])


def prediction_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """Predicted against true value per regression head, from `test_predictions.csv`; rows
    without a true value for a head are left out of that head."""
    frames = [
        pd.DataFrame(
            {"head": name, "true": predictions[f"true_{name}"], "predicted": predictions[name]}
        ).dropna()
        for name in REGRESSION_TARGETS
    ]
    return pd.concat(frames, ignore_index=True)


def confusion_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """sklearn's confusion matrix over the test rows with a true quadrant, one line per
    (true, predicted) pair of quadrants, zeros included."""
    known = predictions.dropna(subset=["true_quadrant"])
    counts = confusion_matrix(known["true_quadrant"], known["quadrant"], labels=list(QUADRANTS))
    return pd.DataFrame(
        [
            {"true": true, "predicted": predicted, "count": int(counts[i, j])}
            for i, true in enumerate(QUADRANTS)
            for j, predicted in enumerate(QUADRANTS)
        ]
    )


def _head_panel(frame: pd.DataFrame, head: str) -> alt.LayerChart:
    """One head's test snapshots, predicted against true, over the y = x line."""
    points = frame[frame["head"] == head]
    values = points[["true", "predicted"]].to_numpy(dtype=float)
    low, high = (float(values.min()), float(values.max())) if len(points) else (0.0, 1.0)
    margin = 0.05 * (high - low) if high > low else 0.5
    low, high = low - margin, high + margin
    diagonal = pd.DataFrame({"true": [low, high], "predicted": [low, high]})
    scale = alt.Scale(domain=[low, high])
    line = (
        alt.Chart(diagonal)
        .mark_line(color="#9ca3af", strokeDash=[4, 4])
        .encode(x=alt.X("true:Q", scale=scale), y=alt.Y("predicted:Q", scale=scale))
    )
    dots = (
        alt.Chart(points)
        .mark_circle(size=40, opacity=0.6, color="#2563eb")
        .encode(
            x=alt.X("true:Q", scale=scale, title=f"true {head}"),
            y=alt.Y("predicted:Q", scale=scale, title=f"predicted {head}"),
            tooltip=["true:Q", "predicted:Q"],
        )
    )
    title = f"{head} (n = {len(points)})"
    return alt.layer(line, dots).properties(width=200, height=200, title=title)


def prediction_chart(frame: pd.DataFrame) -> alt.HConcatChart:
    """Predicted against true on the test tasks, one panel per regression head; points on
    the dashed y = x line are exact."""
    return alt.hconcat(*(_head_panel(frame, head) for head in REGRESSION_TARGETS))


def confusion_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """The quadrant confusion matrix as a heatmap with counts; the diagonal is correct."""
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:N", sort=list(QUADRANTS), title="predicted quadrant"),
        y=alt.Y("true:N", sort=list(QUADRANTS), title="true quadrant"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="snapshots")
    )
    dark = alt.datum.count > max(int(frame["count"].max()), 1) / 2
    labels = base.mark_text(fontSize=12).encode(
        text="count:Q", color=alt.condition(dark, alt.value("white"), alt.value("black"))
    )
    return alt.layer(cells, labels).properties(width=220, height=220, title="Quadrants (test)")


def ranking_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """NDCG@K and Precision@K over K for the predictor's ranking, the entropy's and random."""
    colours = alt.Scale(domain=list(RANKINGS), range=["#2563eb", "#f59e0b", "#9ca3af"])
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("K:Q", title="K"),
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title=None),
            color=alt.Color("ranking:N", scale=colours, title="ranked by"),
            tooltip=["K:Q", "metric:N", "ranking:N", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(width=240, height=180)
        .facet(
            column=alt.Column(
                "metric:N", title=None, sort=[f"{name}@K" for name in RANKING_METRICS.values()]
            )
        )
    )
