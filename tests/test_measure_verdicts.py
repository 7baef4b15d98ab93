"""Three-way verdicts on synthetic intervals, and the run's one verdicts file."""

from __future__ import annotations

import numpy as np
import pytest

from teachable.measure.intervals import DISCORDANT, hierarchical_mean
from teachable.measure.verdicts import MIN_DISCORDANT, combined, judge, outcome
from teachable.records.estimate import Estimate
from teachable.records.verdicts import Verdicts, save_phase_verdicts


def interval(low: float, high: float) -> Estimate:
    return Estimate(value=(low + high) / 2, low=low, high=high, n=10)


@pytest.mark.parametrize(
    ("low", "high", "side", "threshold", "expected"),
    [
        (0.35, 0.6, ">=", 0.3, "holds"),
        (0.1, 0.5, ">=", 0.3, "inconclusive"),
        (-0.4, 0.2, ">=", 0.3, "fails"),
        (0.01, 0.2, ">", 0.0, "holds"),
        (-0.2, 0.0, ">", 0.0, "fails"),
        (-0.1, 0.1, ">", 0.0, "inconclusive"),
        (-0.05, 0.05, "<", 0.1, "holds"),
        (0.05, 0.15, "<", 0.1, "inconclusive"),
        (0.12, 0.3, "<", 0.1, "fails"),
        (0.05, 0.1, "<=", 0.1, "holds"),
        (0.0, 0.0, ">", 0.0, "inconclusive"),
        (0.1, 0.1, "<=", 0.1, "inconclusive"),
    ],
)
def test_outcome_reads_where_the_interval_lies(low, high, side, threshold, expected) -> None:
    assert outcome(interval(low, high), side, threshold) == expected


def test_an_unmeasured_figure_is_inconclusive_and_says_why() -> None:
    verdict = judge("phase4", "r2_U", "R² of U > 0.6", Estimate(value=None, n=0), ">", 0.6)
    assert verdict.outcome == "inconclusive" and verdict.note == "not measured"


def test_zero_discordant_pairs_are_inconclusive_with_the_reason() -> None:
    """Every paired episode ties: the gain is 0 with an honest interval, and the verdict says
    the data carry no information rather than that the gain fails."""
    for shape in [(1, 6, 1), (3, 24, 1)]:
        gain = hierarchical_mean(np.zeros(shape))
        verdict = judge("phase3", "gain", "gain > 0", gain, ">", 0.0)
        assert verdict.outcome == "inconclusive", shape
        assert "0 discordant pairs" in verdict.note or "zero-width" in verdict.note


def test_an_interval_on_too_few_discordant_pairs_is_inconclusive_even_when_clear() -> None:
    """Five of six pairs favor the trained model: Tango's interval clears 0, yet an exact
    McNemar test on 5 discordant pairs cannot reach 95%; six discordant pairs can hold."""
    five = hierarchical_mean(np.array([1.0, 1, 1, 1, 1, 0])[None, :, None])
    assert five.low > 0 and five.counts == {DISCORDANT: 5}
    verdict = judge("phase3", "gain", "gain > 0", five, ">", 0.0, note="pilot")
    assert verdict.outcome == "inconclusive"
    assert verdict.note == f"pilot; rests on 5 discordant pairs, fewer than {MIN_DISCORDANT}"
    six = hierarchical_mean(np.ones((1, 6, 1)))
    assert judge("phase3", "gain", "gain > 0", six, ">", 0.0).outcome == "holds"


def test_each_phase_replaces_only_its_own_verdicts(tmp_path) -> None:
    path = tmp_path / "verdicts.json"
    first = judge("phase1b", "rho", "rho >= 0.3", interval(0.4, 0.5), ">=", 0.3)
    second = judge("phase4", "r2_U", "R² of U > 0.6", interval(0.1, 0.2), ">", 0.6)
    save_phase_verdicts(path, "phase1b", [first])
    save_phase_verdicts(path, "phase4", [second])
    redone = first.model_copy(update={"outcome": "fails"})
    save_phase_verdicts(path, "phase1b", [redone])
    loaded = Verdicts.load(path)
    assert [(v.phase, v.outcome) for v in loaded.verdicts] == [
        ("phase4", "fails"),
        ("phase1b", "fails"),
    ]
    with pytest.raises(ValueError, match="another phase"):
        save_phase_verdicts(path, "phase4", [first])


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["holds", "holds"], "holds"),
        (["holds", "inconclusive"], "inconclusive"),
        (["inconclusive", "fails", "holds"], "fails"),
        ([], "inconclusive"),
    ],
)
def test_combined_outcome_fails_on_any_failure_and_holds_only_when_all_hold(
    outcomes, expected
) -> None:
    verdicts = [
        judge("phase1b", "rho", "rho >= 0.3", interval(0.4, 0.5), ">=", 0.3).model_copy(
            update={"outcome": each}
        )
        for each in outcomes
    ]
    assert combined(verdicts) == expected
