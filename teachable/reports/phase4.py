"""Phase 4's tables and charts: the folds, each out-of-fold metric with its interval and n
against the plan's target, the ranking curves, predicted against true values, and the quadrant
confusion matrix.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
from sklearn.metrics import confusion_matrix

from teachable.records.estimate import Estimate
from teachable.records.predictor import (
    GAIN,
    RANKERS,
    REGRESSION_TARGETS,
    PredictorResult,
    ndcg_criterion,
)
from teachable.vocabulary import QUADRANTS

METRIC_NAMES = {
    "U_r2": "U R²",
    "L_local_r2": "L_local R²",
    "ELP_net_r2": "ELP_net R²",
    "quadrant_accuracy": "quadrant accuracy",
    "quadrant_macro_f1": "quadrant macro F1",
}


RANKING_NAMES = {"ndcg": "NDCG", "precision": "Precision"}


COLUMNS = ["metric", "value", "low", "high", "n", "target", "outcome", "ceiling"]


def _row(name: str, estimate: Estimate, target: str, outcome: str, ceiling: str) -> list:
    values = [estimate.value, estimate.low, estimate.high, estimate.n]
    return [name, *values, target, outcome, ceiling]


def ceiling_of(key: str | None, reliability: dict[str, Estimate]) -> str:
    """The test-retest r of the label an R² metric predicts, with its interval: no predictor
    can explain more of a label's variance than its labels repeat."""
    label = key.removesuffix("_r2") if key and key.endswith("_r2") else None
    return reliability[label].text(2) if label in reliability else "—"


def metrics_table(
    result: PredictorResult, reliability: dict[str, Estimate] | None = None
) -> pd.DataFrame:
    """Every out-of-fold metric with its interval and n, beside the plan's target and the
    verdict's outcome: R² per head (with the label's test-retest ceiling from `reliability`,
    where a panel was labeled twice), quadrant accuracy and macro F1, then at each K the
    predictor's NDCG@K and Precision@K minus the entropy ranking's (paired over the same
    snapshots)."""
    reliability = reliability or {}
    verdicts = {verdict.criterion: verdict for verdict in result.verdicts}
    figures = [(name, key, result.metrics[key]) for key, name in METRIC_NAMES.items()]
    for k, entry in result.ranking.by_k.items():
        for metric, name in RANKING_NAMES.items():
            key = ndcg_criterion(k) if metric == "ndcg" else None
            figures.append((f"{name}@{k} - entropy", key, entry[metric][GAIN]))
    rows = []
    for name, key, estimate in figures:
        verdict = verdicts.get(key)
        ceiling = ceiling_of(key, reliability)
        if verdict is None:
            rows.append(_row(name, estimate, "—", "no target", ceiling))
        else:
            target = f"{verdict.side} {verdict.threshold:g}"
            rows.append(_row(name, estimate, target, verdict.outcome, ceiling))
    return pd.DataFrame(rows, columns=COLUMNS)


def fold_frame(result: PredictorResult) -> pd.DataFrame:
    """One line per fold: how many tasks its model trained on, picked its epoch on and
    predicted, its held-out snapshots, the picked epoch and its validation loss; then the
    saved predictor, trained on every labeled task for the median picked epoch."""
    rows = [
        {
            "model": f"fold {number}",
            "train tasks": len(fold.train),
            "validation tasks": len(fold.validation),
            "held-out tasks": len(fold.test),
            "held-out snapshots": fold.snapshots,
            "epoch": fold.fit.best_epoch,
            "validation loss": fold.fit.best_validation_loss,
        }
        for number, fold in enumerate(result.folds)
    ]
    rows.append(
        {
            "model": "saved (all labeled)",
            "train tasks": len(result.tasks),
            "validation tasks": 0,
            "held-out tasks": 0,
            "held-out snapshots": 0,
            "epoch": result.final.best_epoch,
            "validation loss": None,
        }
    )
    return pd.DataFrame(rows)


def ranking_frame(result: PredictorResult) -> pd.DataFrame:
    """One line per (K, ranking metric, ranking) with its interval: the predictor's, the
    entropy's and random."""
    rows = [
        {
            "K": int(k),
            "metric": f"{name}@K",
            "ranking": ranker,
            "value": entry[metric][ranker].value,
            "low": entry[metric][ranker].low,
            "high": entry[metric][ranker].high,
        }
        for k, entry in result.ranking.by_k.items()
        for metric, name in RANKING_NAMES.items()
        for ranker in RANKERS
    ]
    return pd.DataFrame(rows, columns=["K", "metric", "ranking", "value", "low", "high"])


def prediction_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """Out-of-fold predicted against true value per regression head, from
    `test_predictions.csv`; rows without a true value for a head are left out of that head."""
    frames = [
        pd.DataFrame(
            {"head": name, "true": predictions[f"true_{name}"], "predicted": predictions[name]}
        ).dropna()
        for name in REGRESSION_TARGETS
    ]
    return pd.concat(frames, ignore_index=True)


def confusion_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """sklearn's confusion matrix over the snapshots with a true quadrant (out of fold), one
    line per (true, predicted) pair of quadrants, zeros included."""
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
    """One head's snapshots, predicted out of fold against true, over the y = x line."""
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
    """Out-of-fold predictions against true values, one panel per regression head; points on
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
    return alt.layer(cells, labels).properties(
        width=220, height=220, title="Quadrants (out of fold)"
    )


def ranking_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """NDCG@K and Precision@K over K for the predictor's ranking, the entropy's and random,
    each with its 95% interval as a vertical bar."""
    colours = alt.Scale(domain=list(RANKERS), range=["#2563eb", "#f59e0b", "#9ca3af"])
    base = alt.Chart().encode(
        x=alt.X("K:Q", title="K"),
        color=alt.Color("ranking:N", scale=colours, title="ranked by"),
    )
    lines = base.mark_line(point=True).encode(
        y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title=None),
        tooltip=["K:Q", "metric:N", "ranking:N", alt.Tooltip("value:Q", format=".3f")],
    )
    intervals = base.mark_rule(opacity=0.5).encode(y="low:Q", y2="high:Q")
    return (
        alt.layer(lines, intervals, data=frame)
        .properties(width=240, height=180)
        .facet(
            column=alt.Column(
                "metric:N", title=None, sort=[f"{name}@K" for name in RANKING_NAMES.values()]
            )
        )
    )
