"""Phase 5's tables and charts: each selection method's gain with its interval, the gains
per seed, and the plan's verdicts.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from teachable.parameters import (
    SELECTION_METHODS,
)


def selection_frame(summary: dict) -> pd.DataFrame:
    """One line per method: K, success and gain on the held-out tasks with its interval, gain
    on the test snapshots, and the retention drop."""
    rows = []
    for method, record in summary["methods"].items():
        tasks, snapshots = record["tasks"], record["snapshots"]
        rows.append(
            {
                "method": method,
                "runs": len(record["runs"]),
                "k": record["k"],
                "success_rate": tasks["success_rate"],
                "gain": tasks["gain"],
                "ci_low": tasks["ci_low"],
                "ci_high": tasks["ci_high"],
                "snapshot_gain": snapshots["gain"],
                "retention_drop": record["retention"]["drop"],
                "mean_ELP_net_picked": record["picked"]["mean_ELP_net"],
                "oracle_overlap": record["picked"]["oracle_overlap"],
            }
        )
    columns = ["method", "runs", "k", "success_rate", "gain", "ci_low", "ci_high"]
    columns += ["snapshot_gain", "retention_drop", "mean_ELP_net_picked", "oracle_overlap"]
    return pd.DataFrame(rows, columns=columns).astype({c: float for c in columns[3:]})


def seed_frame(summary: dict) -> pd.DataFrame:
    """The gain of every single run of a method with several (the random seeds)."""
    rows = [
        {"method": method, "run": run, "gain": gain}
        for method, record in summary["methods"].items()
        for run, gain in record["tasks"].get("per_run", {}).items()
    ]
    return pd.DataFrame(rows, columns=["method", "run", "gain"]).astype({"gain": float})


def selection_chart(summary: dict) -> alt.LayerChart:
    """Gain over the base on the held-out tasks per method, with its 95% interval; for random
    the dots are the single seeds."""
    frame, seeds = selection_frame(summary), seed_frame(summary)
    order = [method for method in SELECTION_METHODS if method in set(frame["method"])]
    x = alt.X("method:N", sort=order, axis=alt.Axis(labelAngle=0), title=None)
    bars = (
        alt.Chart(frame)
        .mark_bar(color="#2563eb", opacity=0.8)
        .encode(
            x=x,
            y=alt.Y("gain:Q", title="success gain over base (held-out tasks)"),
            tooltip=["method", "k", "gain", "ci_low", "ci_high", "retention_drop"],
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
        width=320, height=240, title=f"Selection at K = {summary['k']}"
    )


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def verdict_frame(summary: dict) -> pd.DataFrame:
    """The plan's verdicts, one line each: whether it holds and the numbers it rests on."""
    verdicts = summary["verdicts"]
    rows = []
    for name in ("predictor_beats_entropy", "entropy_beats_random"):
        check = verdicts[name]
        first, second = name.split("_beats_")
        detail = f"{first} {_signed(check[first])} vs {second} {_signed(check[second])}"
        rows.append({"verdict": name, "passed": check["passed"], "detail": detail})
    retention = verdicts["retention_comparable"]
    largest = retention["largest_drop"]
    detail = (
        "not measured: the base solved no retention task"
        if largest is None
        else f"largest drop {largest:.3f} (limit {retention['limit']:.2f})"
    )
    rows.append(
        {"verdict": "retention_comparable", "passed": retention["passed"], "detail": detail}
    )
    return pd.DataFrame(rows, columns=["verdict", "passed", "detail"])
