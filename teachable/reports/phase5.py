"""Phase 5's tables and charts: each selection method's gain with its interval, the gains
per seed, and the plan's verdicts.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from teachable.records.selection import SelectionSummary
from teachable.vocabulary import SELECTION_METHODS

COLUMNS = [
    "method",
    "runs",
    "k",
    "success_rate",
    "gain",
    "ci_low",
    "ci_high",
    "n",
    "snapshot_gain",
    "retention_drop",
    "retention_low",
    "retention_high",
    "mean_ELP_net_picked",
    "oracle_overlap",
]


def selection_frame(summary: SelectionSummary) -> pd.DataFrame:
    """One line per method: K, success and gain on the held-out tasks with its interval and n
    (paired episodes), gain on the test snapshots, and the retention drop with its interval."""
    rows = [
        {
            "method": method,
            "runs": len(result.runs),
            "k": result.k,
            "success_rate": result.success.value,
            "gain": result.gain.value,
            "ci_low": result.gain.low,
            "ci_high": result.gain.high,
            "n": result.gain.n,
            "snapshot_gain": result.snapshot_gain.value,
            "retention_drop": result.retention_drop.value,
            "retention_low": result.retention_drop.low,
            "retention_high": result.retention_drop.high,
            "mean_ELP_net_picked": result.picked.mean_ELP_net,
            "oracle_overlap": result.picked.oracle_overlap,
        }
        for method, result in summary.methods.items()
    ]
    numeric = [c for c in COLUMNS if c not in ("method", "runs", "k", "n")]
    return pd.DataFrame(rows, columns=COLUMNS).astype({c: float for c in numeric})


def seed_frame(summary: SelectionSummary) -> pd.DataFrame:
    """The gain of every single run (one per training seed) of every method."""
    rows = [
        {"method": method, "run": run, "gain": gain}
        for method, result in summary.methods.items()
        for run, gain in result.per_seed_gain.items()
    ]
    return pd.DataFrame(rows, columns=["method", "run", "gain"]).astype({"gain": float})


def difference_frame(summary: SelectionSummary) -> pd.DataFrame:
    """The paired differences between methods on the held-out tasks, seed by seed."""
    rows = [
        {"comparison": name, "difference": e.value, "ci_low": e.low, "ci_high": e.high, "n": e.n}
        for name, e in summary.differences.items()
    ]
    return pd.DataFrame(rows, columns=["comparison", "difference", "ci_low", "ci_high", "n"])


def selection_chart(summary: SelectionSummary) -> alt.LayerChart:
    """Gain over the base on the held-out tasks per method, with its 95% interval; the dots
    are the single seeds."""
    frame, seeds = selection_frame(summary), seed_frame(summary)
    order = [method for method in SELECTION_METHODS if method in set(frame["method"])]
    x = alt.X("method:N", sort=order, axis=alt.Axis(labelAngle=0), title=None)
    bars = (
        alt.Chart(frame)
        .mark_bar(color="#2563eb", opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("gain:Q", title="success gain over base (held-out tasks)"),
            tooltip=["method", "k", "gain", "ci_low", "ci_high", "n", "retention_drop"],
        )
    )
    intervals = (
        alt.Chart(frame.dropna(subset=["ci_low", "ci_high"]))
        .mark_rule(color="#111827", strokeWidth=2)
        .encode(x=x, y="ci_low:Q", y2="ci_high:Q")
    )
    dots = (
        alt.Chart(seeds)
        .mark_circle(color="#f59e0b", size=50)
        .encode(x=x, y="gain:Q", tooltip=["run", "gain"])
    )
    labels = (
        alt.Chart(frame)
        .mark_text(align="left", dx=14, fontSize=11)
        .encode(x=x, y="gain:Q", text=alt.Text("gain:Q", format="+.2f"))
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#9ca3af").encode(y="y:Q")
    return alt.layer(bars, zero, intervals, dots, labels).properties(
        width=320, height=240, title=f"Selection at K = {summary.k}"
    )
