"""Two runs side by side: `python -m teachable compare RUN_A RUN_B`.

Verdict by verdict (each run's `verdicts.json`, paired by phase and criterion), both figures
with their intervals, n and outcomes; then the parameters that differ, as dotted keys, from
the parameters each run's `provenance.json` records; and, on request, a chart: a forest plot of
both runs' estimates and intervals per verdict, one panel per phase (each with its own scale),
the threshold as a black tick, the outcome as the point's shape.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import pandas as pd
from tabulate import tabulate

from teachable.pipeline.provenance import Provenance
from teachable.records.estimate import Estimate
from teachable.records.layout import RunLayout
from teachable.records.verdicts import OUTCOMES, Verdict, Verdicts

ABSENT = "absent"  # a key one run's parameters do not hold


@dataclass(frozen=True)
class VerdictPair:
    """One criterion in both runs; None where a run has not judged it."""

    phase: str
    criterion: str
    a: Verdict | None
    b: Verdict | None

    def change(self) -> str:
        """`outcome`, `figure` (its value, interval or n), `only A`, `only B`, or empty when
        both agree; how an estimate is kept (its method, its variance components) is no
        change of figure."""
        if self.a is None or self.b is None:
            return "only A" if self.b is None else "only B"
        if self.a.outcome != self.b.outcome:
            return "outcome"
        return "figure" if shown(self.a.estimate) != shown(self.b.estimate) else ""


def shown(estimate: Estimate) -> tuple:
    """What a reader sees of an estimate: its value, interval and n by its parts."""
    return estimate.value, estimate.low, estimate.high, estimate.size()


def _keyed(verdicts: Sequence[Verdict]) -> dict[tuple[str, str, int], Verdict]:
    """Verdicts by (phase, criterion, how many came before under that name)."""
    seen: Counter[tuple[str, str]] = Counter()
    keyed = {}
    for verdict in verdicts:
        name = (verdict.phase, verdict.criterion)
        keyed[(*name, seen[name])] = verdict
        seen[name] += 1
    return keyed


def pair_verdicts(a: Sequence[Verdict], b: Sequence[Verdict]) -> list[VerdictPair]:
    """Every criterion of either run, in A's order, then those only B judged."""
    keyed_a, keyed_b = _keyed(a), _keyed(b)
    keys = list(dict.fromkeys([*keyed_a, *keyed_b]))
    return [VerdictPair(key[0], key[1], keyed_a.get(key), keyed_b.get(key)) for key in keys]


def dotted(values: dict, prefix: str = "") -> dict[str, object]:
    """A nested parameter dump as `section.key` values."""
    flat: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_parameters(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """The dotted keys whose values differ, with A's and B's value, in A's key order."""
    flat_a, flat_b = dotted(a), dotted(b)
    keys = list(dict.fromkeys([*flat_a, *flat_b]))
    return [
        (key, flat_a.get(key, ABSENT), flat_b.get(key, ABSENT))
        for key in keys
        if flat_a.get(key, ABSENT) != flat_b.get(key, ABSENT)
    ]


@dataclass(frozen=True)
class Comparison:
    """Two runs: their names, their verdicts paired, and what changed in their parameters
    (None where a run has no readable `provenance.json`)."""

    name_a: str
    name_b: str
    pairs: list[VerdictPair]
    parameters: list[tuple[str, object, object]] | None
    missing_provenance: list[str]


def compare_runs(run_a: RunLayout, run_b: RunLayout) -> Comparison:
    """Read both runs' verdicts and recorded parameters; an unreadable `verdicts.json` is a
    `ValueError` naming it."""
    pairs = pair_verdicts(
        Verdicts.load(run_a.verdicts).verdicts, Verdicts.load(run_b.verdicts).verdicts
    )
    provenances = {run: Provenance.load(run) for run in (run_a, run_b)}
    missing = [str(run.provenance) for run, found in provenances.items() if found is None]
    parameters = None
    if not missing:
        parameters = changed_parameters(
            provenances[run_a].parameters, provenances[run_b].parameters
        )
    names = [run_a.folder.name, run_b.folder.name]
    if names[0] == names[1]:
        names = [str(run_a.folder), str(run_b.folder)]
    return Comparison(names[0], names[1], pairs, parameters, missing)


def _figure(verdict: Verdict | None) -> str:
    return "-" if verdict is None else verdict.estimate.text()


def _outcome(verdict: Verdict | None) -> str:
    return "-" if verdict is None else verdict.outcome


def _value(value: object) -> str:
    """A parameter value as JSON writes it (`null`, `[0, 1]`), `absent` as is."""
    return value if value is ABSENT else json.dumps(value)


def verdict_table(comparison: Comparison) -> str:
    """One row per criterion: both figures (estimate [interval], n) and outcomes, the
    threshold, and what changed."""
    rows = []
    for pair in comparison.pairs:
        either = pair.a or pair.b
        rows.append(
            [
                pair.phase,
                pair.criterion,
                _figure(pair.a),
                _outcome(pair.a),
                _figure(pair.b),
                _outcome(pair.b),
                f"{either.side} {either.threshold:g}",
                pair.change(),
            ]
        )
    headers = [
        "phase",
        "criterion",
        f"A: {comparison.name_a}",
        "A outcome",
        f"B: {comparison.name_b}",
        "B outcome",
        "threshold",
        "changed",
    ]
    return tabulate(rows, headers=headers, tablefmt="simple", maxcolwidths=[None, 36])


def describe_comparison(comparison: Comparison) -> str:
    """The verdict table, the tally of changes, then the parameters that differ."""
    changed = Counter(pair.change() for pair in comparison.pairs if pair.change())
    tally = ", ".join(f"{count} {what}" for what, count in changed.items()) or "none"
    lines = [
        f"A: {comparison.name_a}",
        f"B: {comparison.name_b}",
        "",
        "verdicts (each criterion of the plan on its 95% interval)",
        verdict_table(comparison) if comparison.pairs else "no verdict in either run",
        f"{len(comparison.pairs)} criteria; changed: {tally}",
        "",
        "parameters that differ (as each run's provenance.json records them)",
    ]
    if comparison.parameters is None:
        lines.append(f"unknown: no readable {' or '.join(comparison.missing_provenance)}")
    elif not comparison.parameters:
        lines.append("none")
    else:
        rows = [[key, _value(a), _value(b)] for key, a, b in comparison.parameters]
        table = tabulate(rows, headers=["key", "A", "B"], tablefmt="simple", disable_numparse=True)
        lines.append(table)
    return "\n".join(lines)


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per run and verdict with a figure: estimate, interval, threshold, outcome."""
    rows = [
        {
            "phase": pair.phase,
            "verdict": pair.criterion,
            "run": f"{side}: {name}",
            "estimate": verdict.estimate.value,
            "low": verdict.estimate.low,
            "high": verdict.estimate.high,
            "n": verdict.estimate.size(),
            "threshold": verdict.threshold,
            "outcome": verdict.outcome,
        }
        for pair in comparison.pairs
        for side, name, verdict in (
            ("A", comparison.name_a, pair.a),
            ("B", comparison.name_b, pair.b),
        )
        if verdict is not None and verdict.estimate.value is not None
    ]
    return pd.DataFrame(rows)


def comparison_chart(comparison: Comparison) -> alt.FacetChart:
    """The forest plot: per verdict, each run's estimate (its shape the outcome) on its 95%
    interval, the threshold as a black tick; one panel per phase with its own scales."""
    frame = comparison_frame(comparison)
    order = list(dict.fromkeys(frame["verdict"]))
    y = alt.Y("verdict:N", sort=order, title=None, axis=alt.Axis(labelLimit=360))
    run = alt.Color("run:N", title="run")
    intervals = (
        alt.Chart()
        .mark_rule(strokeWidth=2)
        .encode(
            y=y,
            yOffset="run:N",
            color=run,
            x=alt.X("low:Q", title="estimate, 95% interval"),
            x2="high:Q",
        )
    )
    points = (
        alt.Chart()
        .mark_point(filled=True, size=60)
        .encode(
            y=y,
            yOffset="run:N",
            color=run,
            x="estimate:Q",
            shape=alt.Shape("outcome:N", scale=alt.Scale(domain=list(OUTCOMES))),
            tooltip=["run", "verdict", "estimate", "low", "high", "n", "outcome", "threshold"],
        )
    )
    thresholds = alt.Chart().mark_tick(color="black", thickness=2).encode(y=y, x="threshold:Q")
    layered = alt.layer(intervals, points, thresholds, data=frame).properties(
        width=360, height=alt.Step(22)
    )
    return layered.facet(row=alt.Row("phase:N", title=None)).resolve_scale(
        x="independent", y="independent"
    )
