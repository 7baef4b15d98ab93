"""The primary family judged together: Holm's step-down over the plan's own criteria
(`PRIMARY_FAMILY` in `teachable.records.verdicts`), so that the chance that any of them is
decided (holds or fails) while its figure sits at its threshold is at most 5%. Every other
verdict is secondary and keeps its own 95% interval.

Why Holm: it controls the familywise error under any dependence among the tests, and the
primaries are dependent (they share the base's episodes, the labels and the snapshots); it
decides everything Bonferroni decides and more. Hochberg's and Hommel's procedures are more
powerful but need positive dependence, which a family of mixed sides does not promise.

How, from the intervals the phases wrote. A three-way verdict is a two-sided test of "the
figure equals its threshold" whose direction says holds or fails. The intervals come from
several estimators (bootstrap, Wilson, Fisher-z) and `verdicts.json` keeps no p-value, so each
primary's p-value is read from its interval under a normal approximation: the half of the
interval that faces the threshold, measured from the point estimate (the interval's midpoint
when the estimate lies outside it), spans z standard errors, z the normal quantile of the
interval's confidence; each half keeps its own width, so skewed intervals stay skewed. Holm
orders the p-values; the k-th smallest of m is judged at confidence 1 - 0.05 / (m - k + 1):
its interval is widened to that confidence on the same approximation (each half scaled by the
ratio of the two quantiles) and read three-way as before. At its step, Holm's test rejects
exactly when the widened interval clears the threshold, so the interval shown and the decision
agree. Once a step does not decide, every later one is inconclusive: the step-down stops there.

- m is the size of the named family. A criterion the run has not judged yet counts as not
  decided: conservative, and no decision is reversed when later phases add theirs (a p-value
  joining the family only loosens the steps after it).
- A primary that is inconclusive on its own interval carries no evidence (no interval, a
  zero-width one, too few discordant pairs): it ranks with p = 1 and stays inconclusive.
- The intervals are not recomputed by their estimators at the adjusted level: the adjustment
  reads any run's `verdicts.json` without the data behind it. Where an estimator's interval is
  far from normal, the widened interval is an approximation, and its method says so.
- Decisions in both directions from Holm's two-sided tests keep the directional error within
  the familywise level for independent statistics (Shaffer, 1980); for dependent ones that is
  the usual approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

from teachable.measure.intervals import number
from teachable.measure.verdicts import outcome
from teachable.records.estimate import CONFIDENCE, Estimate
from teachable.records.verdicts import PRIMARY_FAMILY, AdjustedVerdict, PrimaryFamily, Verdict

FAMILYWISE_ERROR = 1 - CONFIDENCE

NORMAL = NormalDist()


def holm_steps(p_values: Sequence[float]) -> list[int]:
    """Each p-value's step in Holm's order: 1 for the smallest, ties in the given order."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    steps = [0] * len(p_values)
    for step, index in enumerate(order, 1):
        steps[index] = step
    return steps


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the given order: the one at step k of m becomes the largest
    (m - j + 1) p_(j) over steps j <= k, at most 1; a test is rejected at familywise level alpha
    when its adjusted p-value is at most alpha."""
    steps = holm_steps(p_values)
    running, at_step = 0.0, {}
    for step, p in sorted(zip(steps, p_values, strict=True)):
        running = max(running, min(1.0, (len(p_values) - step + 1) * p))
        at_step[step] = running
    return [at_step[step] for step in steps]


def step_confidence(step: int, family_size: int) -> float:
    """The confidence Holm's `step` (1 for the smallest p-value) of a family is judged at."""
    return 1 - FAMILYWISE_ERROR / (family_size - step + 1)


def _quantile(confidence: float) -> float:
    return NORMAL.inv_cdf((1 + confidence) / 2)


def _centre(estimate: Estimate) -> float:
    """The point the interval's halves are measured from: the estimate, or the interval's
    midpoint when the estimate lies outside it."""
    if estimate.low <= estimate.value <= estimate.high:
        return estimate.value
    return (estimate.low + estimate.high) / 2


def p_value(verdict: Verdict) -> float | None:
    """Two-sided p-value of "the figure equals its threshold", from the half of its interval
    that faces the threshold under a normal approximation; None without an interval or when
    that half has no width."""
    estimate = verdict.estimate
    if not estimate.known:
        return None
    centre = _centre(estimate)
    distance = centre - verdict.threshold
    if distance == 0:
        return 1.0
    half = centre - estimate.low if distance > 0 else estimate.high - centre
    if half <= 0:
        return None
    return 2 * NORMAL.cdf(-abs(distance) / half * _quantile(estimate.confidence))


def widened(estimate: Estimate, confidence: float) -> Estimate:
    """`estimate`'s interval at `confidence`, each half scaled by the ratio of the normal
    quantiles."""
    if not estimate.known:
        return estimate.model_copy(update={"confidence": confidence})
    centre = _centre(estimate)
    scale = _quantile(confidence) / _quantile(estimate.confidence)
    return estimate.model_copy(
        update={
            "low": number(centre - (centre - estimate.low) * scale),
            "high": number(centre + (estimate.high - centre) * scale),
            "confidence": confidence,
            "method": ", ".join(
                filter(
                    None, [estimate.method, f"widened to {confidence:.2%} (normal approximation)"]
                )
            ),
        }
    )


def _evidence(verdict: Verdict) -> float:
    """The p-value Holm ranks a verdict by: 1 when it is inconclusive on its own interval."""
    p = p_value(verdict)
    return 1.0 if p is None or verdict.outcome == "inconclusive" else p


def primary_family(verdicts: Sequence[Verdict]) -> PrimaryFamily:
    """The run's primary verdicts, each judged at its Holm step over the whole named family
    (the primaries not judged yet count as not decided), in the order the phases wrote them."""
    primaries = [verdict for verdict in verdicts if verdict.role == "primary"]
    judged = {(verdict.phase, verdict.criterion) for verdict in primaries}
    missing = [member for member in PRIMARY_FAMILY if member not in judged]
    evidence = [*map(_evidence, primaries), *[1.0] * len(missing)]
    steps, adjusted_p = holm_steps(evidence), holm(evidence)
    return PrimaryFamily(
        adjusted=[
            _at_step(verdict, steps[index], len(evidence), adjusted_p[index])
            for index, verdict in enumerate(primaries)
        ],
        missing=missing,
        familywise_error=FAMILYWISE_ERROR,
    )


def _at_step(verdict: Verdict, step: int, family_size: int, adjusted_p: float) -> AdjustedVerdict:
    """`verdict` judged at Holm's `step`: its widened interval read three-way when Holm rejects
    "the figure equals its threshold" there, else inconclusive."""
    estimate = widened(verdict.estimate, step_confidence(step, family_size))
    rejected = adjusted_p <= FAMILYWISE_ERROR
    return AdjustedVerdict(
        verdict=verdict,
        p_value=p_value(verdict),
        adjusted_p=adjusted_p,
        step=step,
        family_size=family_size,
        estimate=estimate,
        outcome=outcome(estimate, verdict.side, verdict.threshold) if rejected else "inconclusive",
    )
