"""Label reliability: a panel labeled twice on independent streams. The test-retest
correlation of a label bounds the R² any predictor can reach on it, and says whether its
labels rest on enough rollouts. `label_reliability` gives it for each label Phase 1 retests;
`split_half` does the same for a utility measured once, from two halves of its rollouts; and
`disattenuated` reads a correlation against the ceiling both reliabilities set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from teachable.measure.intervals import CONFIDENCE, number, pearson
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot
from teachable.records.reliability import RELIABLE_LABELS


def test_retest(
    first: Sequence[float], second: Sequence[float], confidence: float = CONFIDENCE
) -> Estimate:
    """Pearson's r between two labelings of the same snapshots, with its Fisher-z interval;
    no r where a side is constant."""
    r = pearson(first, second, confidence)
    return r.model_copy(update={"method": "test-retest pearson r, Fisher z interval"})


test_retest.__test__ = False  # a function of the package, not a pytest test


def label_reliability(
    first: Sequence[LabeledSnapshot], second: Sequence[LabeledSnapshot]
) -> dict[str, Estimate]:
    """Test-retest r of U, L_local and ELP_net over the panel rows that carry the label in
    both labelings, each with its interval and n."""
    estimates = {}
    for name, label in RELIABLE_LABELS.items():
        pairs = [
            (label(a), label(b))
            for a, b in zip(first, second, strict=True)
            if label(a) is not None and label(b) is not None
        ]
        estimates[name] = test_retest([a for a, _ in pairs], [b for _, b in pairs])
    return estimates


def spearman_brown(r: float | None) -> float | None:
    """The reliability of a whole measurement from the correlation of its two halves."""
    if r is None or r <= -1:
        return None
    return number(2 * r / (1 + r))


def split_half(first: Sequence[float], second: Sequence[float]) -> Estimate:
    """The reliability of a utility from its two halves (each measured on half of the streams):
    their Pearson r over the panel stepped up by Spearman-Brown to the full length, the interval
    stepped up with it."""
    r = pearson(first, second)
    stepped = {key: spearman_brown(getattr(r, key)) for key in ("value", "low", "high")}
    method = "split-half pearson r over the panel, Spearman-Brown to full length, Fisher z"
    return r.model_copy(update={**stepped, "method": method})


def ceiling(reliabilities: Sequence[Estimate | None]) -> float | None:
    """The highest correlation two noisy measurements can show, sqrt of their reliabilities'
    product; None where a reliability is unknown or not positive."""
    values = [None if r is None else r.value for r in reliabilities]
    if any(v is None or v <= 0 for v in values):
        return None
    return number(np.sqrt(np.prod(values)))


def disattenuated(rho: Estimate, bound: float | None) -> Estimate | None:
    """`rho / bound` (the `ceiling` of both reliabilities), the correlation the labels would
    show without measurement noise, its interval rho's divided the same way (the reliabilities
    taken as known, so it is narrower than the truth) and clipped to [-1, 1]. None where rho or
    the ceiling is unknown: noise alone may then explain the labels."""
    if rho.value is None or bound is None:
        return None

    def scaled(value: float | None) -> float | None:
        return None if value is None else number(np.clip(value / bound, -1, 1))

    return rho.model_copy(
        update={
            "value": scaled(rho.value),
            "low": scaled(rho.low),
            "high": scaled(rho.high),
            "method": f"{rho.method}; disattenuated by the ceiling {bound:.3f} "
            "(reliabilities taken as known)",
            "p_value": None,
        }
    )
