"""Quadrant placement: labeled rows placed in the U x L quadrants with the thresholds Phase 1's
parameters name (automatic quantile cuts, or fixed ones) or chosen ones (the picker, the command
line), saved with both threshold files and the labeled files, and small quadrants warned about."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from teachable.models.label_steps import require_fields
from teachable.parameters import Phase1Parameters
from teachable.records.labeled import LabeledSnapshot, assign_quadrants, save_labeled
from teachable.records.layout import Phase1Layout
from teachable.records.quadrants import (
    Thresholds,
    auto_thresholds,
    quadrant_counts,
    save_thresholds,
    small_quadrants,
)
from teachable.vocabulary import Quadrant


def thresholds_from_parameters(
    rows: Sequence[LabeledSnapshot], phase1: Phase1Parameters
) -> Thresholds:
    """The automatic thresholds, or the fixed ones when the parameters say so."""
    if phase1.thresholds == "fixed":
        return Thresholds(U=phase1.U_threshold, L=phase1.L_threshold, source="parameters")
    return automatic_thresholds(rows, phase1)


def automatic_thresholds(rows: Sequence[LabeledSnapshot], phase1: Phase1Parameters) -> Thresholds:
    """The quantile cuts of the rows' U and L at the parameters' quantiles."""
    u_values = [row.U for row in rows if row.U is not None]
    l_values = [row.L for row in rows if row.L is not None]
    return auto_thresholds(u_values, l_values, phase1.U_quantile, phase1.L_quantile)


@dataclass
class QuadrantAssignment:
    """The rows with their quadrants, the thresholds used, the count per quadrant, and what to
    look at (small quadrants, or no quadrants at all)."""

    rows: list[LabeledSnapshot]
    thresholds: Thresholds
    counts: dict[Quadrant, int]
    warnings: list[str]


def place_in_quadrants(
    rows: Sequence[LabeledSnapshot],
    out: Phase1Layout,
    phase1: Phase1Parameters,
    chosen: Thresholds | None = None,
) -> QuadrantAssignment:
    """Assign quadrants and save the result: `quadrant_thresholds_auto.json` always, the
    chosen thresholds (`chosen`, or fixed parameters) as `quadrant_thresholds.json`, and the
    rows with their quadrants in both labeled files. Small quadrants are warned about. Rows
    without U (or without leverage, unless it is skipped) are refused before anything is
    written: they would get no quadrant and move the automatic cut."""
    require_fields(rows, "quadrants", phase1)
    auto = automatic_thresholds(rows, phase1)
    save_thresholds(out.thresholds_auto, auto)
    thresholds = chosen or thresholds_from_parameters(rows, phase1)
    if thresholds.source != "auto":
        save_thresholds(out.thresholds_chosen, thresholds)
    elif out.thresholds_chosen.is_file():
        warnings.warn(
            f"{out.thresholds_chosen} (chosen thresholds) exists: later phases use it, not "
            "the automatic thresholds applied here",
            stacklevel=2,
        )
    if thresholds.L is None:
        assigned = [row.model_copy(update={"quadrant": None}) for row in rows]
        counts = quadrant_counts(())
        problems = ["leverage was not measured: no quadrants assigned"]
    else:
        assigned = assign_quadrants(rows, thresholds.U, thresholds.L)
        counts = quadrant_counts(row.quadrant for row in assigned)
        problems = small_quadrants(counts, phase1.min_per_quadrant)
    save_labeled(out, assigned)
    return QuadrantAssignment(assigned, thresholds, counts, problems)
