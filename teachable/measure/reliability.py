"""Label reliability: a panel labeled twice on independent streams. The test-retest
correlation of a label bounds the R² any predictor can reach on it, and says whether its
labels rest on enough rollouts. `label_reliability` gives it for each label Phase 1 retests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from teachable.measure.intervals import CONFIDENCE, RESAMPLES, bootstrap_rows
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot
from teachable.records.reliability import RELIABLE_LABELS


def test_retest(
    first: Sequence[float],
    second: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Pearson's r between two labelings of the same snapshots, with a percentile bootstrap
    interval over snapshots; None where a side is constant."""
    x, y = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    r = bootstrap_rows(
        len(x), lambda rows: {"r": _pearson(x[rows], y[rows])}, resamples, seed, confidence
    )
    method = "test-retest pearson r, percentile bootstrap over snapshots"
    return r["r"].model_copy(update={"method": method})


test_retest.__test__ = False  # a function of the package, not a pytest test


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def label_reliability(
    first: Sequence[LabeledSnapshot],
    second: Sequence[LabeledSnapshot],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Test-retest r of U, L_local and ELP_net over the panel rows that carry the label in
    both labelings, each with its bootstrap interval and n."""
    estimates = {}
    for name, label in RELIABLE_LABELS.items():
        pairs = [
            (label(a), label(b))
            for a, b in zip(first, second, strict=True)
            if label(a) is not None and label(b) is not None
        ]
        x, y = [a for a, _ in pairs], [b for _, b in pairs]
        estimates[name] = test_retest(x, y, resamples, seed)
    return estimates
