"""The primary family: named once, each of its criteria one a phase writes, shown in the
README, and judged together by Holm's step-down; Holm's adjustment checked on a textbook family,
against the closed test it is, and for its familywise error on simulated families."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import fields
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from teachable.measure.multiplicity import (
    holm,
    holm_steps,
    p_value,
    primary_family,
    step_confidence,
    widened,
)
from teachable.measure.verdicts import judge
from teachable.records.estimate import Estimate
from teachable.records.verdicts import PRIMARY_FAMILY, Verdict, Verdicts, save_phase_verdicts

README = Path(__file__).resolve().parents[1] / "README.md"
Z95 = NormalDist().inv_cdf(0.975)


# --- Holm's adjustment -------------------------------------------------------------------------


def test_holm_on_the_textbook_family() -> None:
    """Four hypotheses with p = 0.01, 0.04, 0.03, 0.005 at alpha = 0.05: 0.005 <= 0.05/4 and
    0.01 <= 0.05/3 are rejected, 0.03 > 0.05/2 stops the step-down (0.04 <= 0.05 is not
    reached). Adjusted: 4 x 0.005, 3 x 0.01, 2 x 0.03, then max(0.06, 0.04)."""
    p_values = [0.01, 0.04, 0.03, 0.005]
    assert holm_steps(p_values) == [2, 4, 3, 1]
    assert holm(p_values) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p <= 0.05 for p in holm(p_values)] == [True, False, False, True]


def closed_bonferroni(p_values: list[float]) -> list[float]:
    """Holm by its definition as a closed test: a hypothesis's adjusted p-value is the largest,
    over every intersection that contains it, of that intersection's Bonferroni p-value."""
    m = len(p_values)
    subsets = [
        subset for size in range(1, m + 1) for subset in itertools.combinations(range(m), size)
    ]
    return [
        max(min(1.0, len(s) * min(p_values[j] for j in s)) for s in subsets if i in s)
        for i in range(m)
    ]


def test_holm_is_the_closed_test_of_bonferroni() -> None:
    rng = np.random.default_rng(11)
    families = [list(rng.uniform(0, 0.1, 6) ** rng.uniform(1, 3)) for _ in range(40)]
    families.append([0.01, 0.01, 0.02, 0.5, 0.002, 0.002])  # ties
    for p_values in families:
        assert holm(p_values) == pytest.approx(closed_bonferroni(p_values))


# --- p-values and widened intervals from an interval -------------------------------------------


def normal(value: float, se: float, confidence: float = 0.95) -> Estimate:
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    return Estimate(
        value=value, low=value - z * se, high=value + z * se, n=50, confidence=confidence
    )


def test_a_normal_intervals_p_value_and_its_widening_agree() -> None:
    verdict = judge("phase4", "L_local_r2", "R² of L > 0.5", normal(1.5, 0.5), ">", 0.5)
    assert p_value(verdict) == pytest.approx(2 * NormalDist().cdf(-2.0))
    at_p = widened(verdict.estimate, 1 - p_value(verdict))
    assert at_p.low == pytest.approx(0.5, abs=1e-5), "the interval at 1 - p touches the threshold"
    same = normal(1.5, 0.5, confidence=0.9)
    assert p_value(verdict.model_copy(update={"estimate": same})) == pytest.approx(p_value(verdict))


def test_each_half_of_a_skewed_interval_is_kept() -> None:
    """0.5 [0.4, 0.9]: a threshold below is read on the lower half (0.1 wide), one above on the
    upper half (0.4 wide), and the widened interval stays skewed the same way."""
    skewed = Estimate(value=0.5, low=0.4, high=0.9, n=30)
    below = judge("phase4", "quadrant_accuracy", "above 0.3", skewed, ">", 0.3)
    above = judge("phase4", "quadrant_accuracy", "above 1.1", skewed, ">", 1.1)
    assert p_value(below) == pytest.approx(2 * NormalDist().cdf(-0.2 / 0.1 * Z95))
    assert p_value(above) == pytest.approx(2 * NormalDist().cdf(-0.6 / 0.4 * Z95))
    wide = widened(skewed, 0.99)
    z99 = NormalDist().inv_cdf(0.995)
    assert wide.low == pytest.approx(0.5 - 0.1 * z99 / Z95, abs=1e-6)
    assert wide.high == pytest.approx(0.5 + 0.4 * z99 / Z95, abs=1e-6)
    assert wide.confidence == 0.99 and "normal approximation" in wide.method


# --- the family judged together ----------------------------------------------------------------


def with_p(phase: str, criterion: str, p: float, sign: int = 1) -> Verdict:
    """A verdict on "> 0" whose normal 95% interval gives a two-sided p-value of `p`, on the
    claimed side (sign 1) or the other (sign -1)."""
    value = sign * NormalDist().inv_cdf(1 - p / 2)
    return judge(phase, criterion, f"{criterion} > 0", normal(value, 1.0), ">", 0.0)


def family_of(p_values: list[float], signs: list[int] | None = None) -> list[Verdict]:
    """A verdict for each primary in family order, on the given p-values."""
    signs = signs or [1] * len(p_values)
    return [
        with_p(phase, criterion, p, sign)
        for (phase, criterion), p, sign in zip(PRIMARY_FAMILY, p_values, signs, strict=False)
    ]


def outcomes(verdicts: list[Verdict]) -> list[str]:
    return [adjusted.outcome for adjusted in primary_family(verdicts).adjusted]


def test_holm_decides_in_order_both_ways_and_more_than_bonferroni() -> None:
    m = len(PRIMARY_FAMILY)
    assert m >= 4
    bonferroni = 0.05 / m
    third = bonferroni * 1.05  # above Bonferroni's level, within Holm's third step
    assert third * (m - 2) <= 0.05
    p_values = [0.2, 0.001, third, 0.9, 0.004] + [0.5] * (m - 5)
    verdicts = family_of(p_values, signs=[1, 1, 1, 1, -1] + [1] * (m - 5))
    family = primary_family(verdicts)
    # p = 0.2 and 0.9 are inconclusive on their own: they rank with p = 1, in family order
    assert [a.step for a in family.adjusted][:5] == [4, 1, 3, 5, 2]
    assert outcomes(verdicts)[:5] == ["inconclusive", "holds", "holds", "inconclusive", "fails"]
    assert [a.verdict.outcome for a in family.adjusted][:5] == [
        "inconclusive",
        "holds",
        "holds",
        "inconclusive",
        "fails",
    ]
    decided = family.adjusted[2]
    assert decided.estimate.confidence == pytest.approx(step_confidence(3, m))
    assert decided.estimate.low > 0 and p_value(decided.verdict) > bonferroni
    assert [a.verdict.criterion for a in family.failing] == [PRIMARY_FAMILY[4][1]]


def test_the_step_down_stops_at_the_first_step_that_does_not_decide() -> None:
    """p = 0.006 > 0.05/9 stops the step-down at step 1, so p = 0.0061 <= 0.05/8 at step 2 is
    not decided either, though its interval at that step clears the threshold."""
    m = len(PRIMARY_FAMILY)
    first, second = 0.05 / m * 1.05, 0.05 / (m - 1) * 0.98
    assert first < second
    family = primary_family(family_of([first, second] + [0.5] * (m - 2)))
    at_second = family.adjusted[1]
    assert at_second.step == 2 and at_second.estimate.low > 0
    assert [a.outcome for a in family.adjusted[:2]] == ["inconclusive", "inconclusive"]
    assert at_second.verdict.outcome == "holds", "it holds on its own 95% interval"


def test_primaries_not_judged_yet_count_and_no_decision_reverses_as_phases_add_theirs() -> None:
    one = primary_family([with_p(*PRIMARY_FAMILY[0], 0.01)])
    assert one.missing == list(PRIMARY_FAMILY[1:])
    assert one.adjusted[0].family_size == len(PRIMARY_FAMILY)
    assert one.adjusted[0].outcome == "inconclusive", "0.01 x 9 > 0.05"
    rng = np.random.default_rng(5)
    for _ in range(30):
        verdicts = family_of(list(rng.uniform(0, 0.02, len(PRIMARY_FAMILY)) ** 1.5))
        earlier = outcomes(verdicts[:1])
        for count in range(2, len(verdicts) + 1):
            later = outcomes(verdicts[:count])
            assert all(
                before == "inconclusive" or before == after
                for before, after in zip(earlier, later, strict=False)
            )
            earlier = later


def test_a_primary_inconclusive_on_its_own_interval_carries_no_evidence() -> None:
    """A verdict ruled inconclusive on its own (say, on too few discordant pairs) stays so and
    ranks with p = 1, whatever its interval; a zero-width interval gives no p-value, so a run
    written before zero-width intervals were ruled out has its 0.2 [0.2, 0.2] "holds" undecided
    in the family."""
    ruled = with_p(*PRIMARY_FAMILY[0], 1e-9).model_copy(
        update={"outcome": "inconclusive", "note": "3 discordant pairs"}
    )
    zero_width = Estimate(value=0.2, low=0.2, high=0.2, n=6)
    flat = judge(*PRIMARY_FAMILY[1], "gain > 0", zero_width, ">", 0).model_copy(
        update={"outcome": "holds", "note": ""}
    )
    decided = with_p(*PRIMARY_FAMILY[2], 0.004)
    family = primary_family([ruled, flat, decided])
    assert [a.outcome for a in family.adjusted] == ["inconclusive", "inconclusive", "holds"]
    assert [a.step for a in family.adjusted] == [2, 3, 1], "after every p-value below 1"
    assert p_value(ruled) < 1e-8 and p_value(flat) is None


def test_a_secondary_verdict_stays_out_of_the_family(tmp_path) -> None:
    rho = judge("phase1b", "rho", "rho >= 0.3", normal(0.6, 0.1), ">=", 0.3)
    u_r2 = judge("phase4", "U_r2", "R² of U > 0.6", normal(0.1, 0.05), ">", 0.6)
    assert (rho.role, u_r2.role) == ("primary", "secondary")
    assert [a.verdict for a in primary_family([rho, u_r2]).adjusted] == [rho]
    path = tmp_path / "verdicts.json"
    save_phase_verdicts(path, "phase1b", [rho])
    save_phase_verdicts(path, "phase4", [u_r2])
    written = json.loads(path.read_text())["verdicts"]
    assert [v["role"] for v in written] == ["primary", "secondary"]
    assert Verdicts.load(path).verdicts == [rho, u_r2]


def test_holm_keeps_the_familywise_error_where_each_95_percent_interval_does_not() -> None:
    """Every primary's figure at its threshold, independent normal estimates: some verdict of
    the family is decided in about 37% of 2000 simulated runs on its own 95% intervals, in at
    most 5% (and a little under, for independent tests) after Holm."""
    rng = np.random.default_rng(2024)
    runs, wrong_alone, wrong_holm = 2000, 0, 0
    for _ in range(runs):
        verdicts = [
            judge(phase, criterion, "> 0", normal(value, 1.0), ">", 0.0)
            for (phase, criterion), value in zip(
                PRIMARY_FAMILY, rng.normal(0, 1, len(PRIMARY_FAMILY)), strict=True
            )
        ]
        wrong_alone += any(verdict.outcome != "inconclusive" for verdict in verdicts)
        wrong_holm += any(outcome != "inconclusive" for outcome in outcomes(verdicts))
    assert wrong_alone / runs > 0.3
    assert 0.03 < wrong_holm / runs <= 0.06


# --- the family is named once, written by the phases and shown in the README ---------------------


def estimate(value: float = 0.1) -> Estimate:
    return Estimate(value=value, low=value - 0.05, high=value + 0.05, n=20)


def written_by_the_phases() -> set[tuple[str, str]]:
    """(phase, criterion) of every verdict the phases' own verdict builders write, each built
    on small synthetic inputs. The builders are imported here, so that Holm's tests above stand
    on their own."""
    from teachable.measure.cpt_gate import gate
    from teachable.measure.dose import harm_verdicts
    from teachable.phases.phase3_evaluation import phase3_verdicts
    from teachable.phases.phase4_predictor import predictor_verdicts
    from teachable.phases.phase5_selection import selection_verdicts
    from teachable.records.adapter_probe import AdapterProbe
    from teachable.records.evaluation import Evaluation
    from teachable.records.predictor import Ranking

    probe = AdapterProbe(
        drift=estimate(),
        expert_change=estimate(),
        target_change=estimate(),
        specificity=estimate(),
        n_probes=4,
        n_trained=2,
    )
    rng = np.random.default_rng(3)
    panel = pd.DataFrame(
        {
            "quadrant": ["Q1_highU_highL", "Q2_highU_lowL", "Q3_lowU_lowL", "Q4_lowU_highL"] * 4,
            "ELP_net": rng.normal(size=16),
            "delta_vs_control": rng.normal(size=16),
            "delta": rng.normal(size=16),
        }
    )
    empty = pd.DataFrame(columns=["unit", "status", "level", "cell", "format"])
    tables = {field.name: empty for field in fields(Evaluation) if field.name != "record"}
    evaluation = Evaluation(**tables, record={"quadrant_comparison": estimate().model_dump()})
    metrics = {name: estimate(0.5) for name in ("U_r2", "L_local_r2", "quadrant_accuracy")}
    ranking = Ranking(definition="", n=0, n_relevant=0, by_k={})
    differences = {"predictor-entropy": estimate(), "entropy-random": estimate()}
    verdicts = [
        *harm_verdicts(probe, probe, budget=0.05, tolerance=0.1),
        *gate(panel, seed=0, resamples=20).verdicts,
        *phase3_verdicts(evaluation),
        *predictor_verdicts(metrics, ranking),
        *selection_verdicts({}, differences),
    ]
    return {(verdict.phase, verdict.criterion) for verdict in verdicts}


def test_every_primary_is_a_criterion_a_phase_writes_and_is_named_once() -> None:
    written = written_by_the_phases()
    assert len(set(PRIMARY_FAMILY)) == len(PRIMARY_FAMILY)
    assert [member for member in PRIMARY_FAMILY if member not in written] == []
    phases = {phase for phase, _ in written}
    assert {phase for phase, _ in PRIMARY_FAMILY} == phases, "every judging phase has a primary"


def test_the_readme_shows_the_primary_family() -> None:
    """The README's section on the primary family, up to the next heading, names every
    criterion of `PRIMARY_FAMILY` and has a row for each of its phases."""
    text = README.read_text()
    start = re.search(r"^#+ The primary family\n", text, re.M)
    assert start, "the README has no section on the primary family"
    section = text[start.end() :].split("\n#", 1)[0]
    shown = set(re.findall(r"`([^`]+)`", section))
    assert [criterion for _, criterion in PRIMARY_FAMILY if criterion not in shown] == []
    for phase, _ in PRIMARY_FAMILY:
        assert re.search(rf"^\| {phase.removeprefix('phase').upper()} ", section, re.M), phase
