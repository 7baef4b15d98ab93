"""The reliability retest: a seeded panel of labeled rows is labeled a second time on the
independent `retest` streams, with the same teacher answers, so that the test-retest r of each
label (`measure.reliability`) says how much of it is rollout noise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from teachable.models.conditions import RETEST, stable_int
from teachable.models.labeling import (
    Measured,
    Measurement,
    in_groups,
    same_patches,
    snapshot_uncertainty,
)
from teachable.parameters import Phase1Parameters
from teachable.records.labeled import LabeledSnapshot


def reliability_panel(
    rows: Sequence[LabeledSnapshot], size: int, seed: int
) -> list[LabeledSnapshot]:
    """A seeded draw of `size` rows (all of them when fewer), in their order; of the same rows,
    a larger panel holds every smaller one, so growing it keeps the retests already made."""
    draw = np.random.default_rng((seed, stable_int("reliability panel")))
    picked = draw.permutation(len(rows))[:size]
    return [rows[i] for i in sorted(picked)]


def still_to_retest(
    panel: Sequence[LabeledSnapshot], logged: Mapping[str, LabeledSnapshot]
) -> list[LabeledSnapshot]:
    """The panel rows without a logged retest, or whose teacher answer has since changed a
    patch (their logged CPT no longer pairs with the first labeling)."""
    return [
        row
        for row in panel
        if row.id not in logged or not same_patches(logged[row.id].teacher, row.teacher)
    ]


def retest_measurements(
    pending: Sequence[LabeledSnapshot], phase1: Phase1Parameters, seed: int
) -> list[Measurement]:
    """The retest units of `pending`, `phase1.batch_snapshots` at a time, on the `retest`
    streams with each row's own teacher answer."""
    leverage, cpt = not phase1.skip_leverage, not phase1.skip_cpt
    return [
        Measurement(
            tuple(group), tuple(row.teacher for row in group), phase1, seed, leverage, cpt, RETEST
        )
        for group in in_groups(pending, phase1.batch_snapshots)
    ]


def retested_rows(measurement: Measurement, measured: Sequence[Measured]) -> list[LabeledSnapshot]:
    """The second labeling of a retest unit's rows: U again, and the leverage and CPT measured
    on the retest streams; no quadrant."""
    method = measurement.phase1.U_method
    return [
        row.model_copy(
            update={
                "U": snapshot_uncertainty(row, method),
                "leverage": result.leverage,
                "cpt": result.cpt,
                "quadrant": None,
            }
        )
        for row, result in zip(measurement.snapshots, measured, strict=True)
    ]
