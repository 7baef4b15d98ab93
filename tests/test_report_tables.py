"""Report tables: one naming for intervals, no row without a figure, no -0.000."""

from __future__ import annotations

import numpy as np
import pandas as pd

from teachable.reports.tables import ESTIMATE, interval_columns, shown


def test_shown_joins_each_interval_and_drops_rows_without_a_figure():
    frame = pd.DataFrame(
        {
            "panel": ["all", "Q1", "Q2"],
            "value": [0.41, np.nan, -0.0001],
            "low": [0.2, np.nan, -0.3],
            "high": [0.6, np.nan, np.nan],
            "n": [12.0, np.nan, 3.0],
            "gain": [0.125, np.nan, 0.5],
            "gain_low": [0.05, np.nan, 0.1],
            "gain_high": [0.2, np.nan, 0.9],
            "steps": [4.123456, 4.0, 4.0],
        }
    )
    assert interval_columns(frame) == [("value", "low", "high"), ("gain", "gain_low", "gain_high")]
    table = shown(frame)
    assert list(table.columns) == ["panel", ESTIMATE, "n", "gain [low, high]", "steps"]
    assert list(table["panel"]) == ["all", "Q2"], "the row without any figure is gone"
    assert list(table[ESTIMATE]) == ["0.410 [0.200, 0.600]", "0.000 [no interval]"]
    assert list(table["gain [low, high]"]) == ["0.125 [0.050, 0.200]", "0.500 [0.100, 0.900]"]
    assert table["steps"].iloc[0] == 4.123
    assert list(table["n"]) == [12, 3] and str(table["n"].dtype) == "Int64"


def test_a_frame_without_intervals_is_only_rounded():
    frame = pd.DataFrame({"r": [0.12345], "n": [3]})
    assert shown(frame).to_dict("list") == {"r": [0.123], "n": [3]}
    means = shown(pd.DataFrame({"mean_n": [2.5, np.nan]}))
    assert str(means["mean_n"].dtype) == "float64", "a count column that is not whole stays"
