"""The reliability-retention frontier: each evaluated cell's gain on the held-out tasks against
its retention drop, and the Pareto front of the cells no other cell beats on both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(gain: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """True where no other point has as much gain or more and as little drop or less, and
    strictly better on one of them; a point with a NaN is never on the front."""
    gain, drop = np.asarray(gain, dtype=float), np.asarray(drop, dtype=float)
    known = ~(np.isnan(gain) | np.isnan(drop))
    mask = np.zeros(len(gain), dtype=bool)
    for i in np.flatnonzero(known):
        as_good = known & (gain >= gain[i]) & (drop <= drop[i])
        better = (gain > gain[i]) | (drop < drop[i])
        mask[i] = not (as_good & better).any()
    return mask


def frontier(overall: pd.DataFrame, retention: pd.DataFrame) -> pd.DataFrame:
    """Per evaluated cell: gain over the base on held-out tasks against the retention drop over
    all levels, with their intervals; `pareto` marks the cells no other cell beats on both
    (more gain, less drop)."""
    cells = overall[(overall["unit"] == "cell") & (overall["status"] == "evaluated")]
    table = cells[["cell", "quadrant", "format", "seeds", "gain", "gain_low", "gain_high"]]
    table = table.reset_index(drop=True)
    drops = retention[(retention["unit"] == "cell") & (retention["level"] == "all")]
    drops = drops.set_index("cell")
    for column in ("drop", "drop_low", "drop_high"):
        table[column] = table["cell"].map(drops[column]).astype(float)
    table["pareto"] = pareto_mask(table["gain"], table["drop"])
    return table
