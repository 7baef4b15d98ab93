"""A run's front page, `runs/<run>/reports/index.html`: every phase's report, every verdict of
`verdicts.json` as a forest plot and as a table, and the provenance of the last invocation.

The forest plot gives each verdict a row of its own scale (an R², a KL and a success gain do
not share an axis): its estimate as a point shaped by its role (primary or secondary) and
coloured by its outcome, its interval as a line, its threshold as a dashed line; a verdict
without an estimate keeps its row, marked so. The primaries come first. Every estimate is
written one way, `estimate [low, high]` beside its n. The page reads offline: styles inline,
the plot an embedded PNG drawn by vl-convert, nothing fetched.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import altair as alt
import pandas as pd
from jinja2 import Environment

from teachable.records.layout import RunLayout
from teachable.records.store import read_json
from teachable.records.verdicts import Role, Verdict, Verdicts
from teachable.reports.charts import chart_png
from teachable.reports.palette import outcome_colour, outcome_css
from teachable.reports.tables import ESTIMATE, estimate_text

ROLE_SHAPES = alt.Scale(domain=list(get_args(Role)), range=["diamond", "circle"])

# The packages a reader checks first; provenance.json keeps them all.
KEY_PACKAGES = ("teachable", "torch", "transformers", "peft", "minigrid", "numpy", "pandas")


def in_order(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The primaries, then the secondaries, each in the order the phases wrote them."""
    return sorted(verdicts, key=lambda verdict: verdict.role != "primary")


def label(verdict: Verdict) -> str:
    """`phase1b · rho`: a verdict's row in the forest plot."""
    return f"{verdict.phase} · {verdict.criterion}"


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per verdict: phase, criterion, role, claim, the estimate with its interval and
    n, the threshold with its side, the outcome and any note."""
    rows = [
        {
            "phase": verdict.phase,
            "criterion": verdict.criterion,
            "role": verdict.role,
            "claim": verdict.claim,
            ESTIMATE: estimate_text(verdict.estimate),
            "n": verdict.estimate.size(),
            "threshold": f"{verdict.side} {verdict.threshold:g}",
            "outcome": verdict.outcome,
            "note": verdict.note,
        }
        for verdict in in_order(verdicts)
    ]
    columns = ["phase", "criterion", "role", "claim", ESTIMATE, "n", "threshold", "outcome"]
    return pd.DataFrame(rows, columns=[*columns, "note"])


def forest_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """What the forest plot draws: per verdict its label, role, outcome, threshold, figure and
    interval (NaN where there is none)."""
    rows = [
        {
            "verdict": label(verdict),
            "role": verdict.role,
            "outcome": verdict.outcome,
            "threshold": verdict.threshold,
            "value": verdict.estimate.value,
            "low": verdict.estimate.low,
            "high": verdict.estimate.high,
        }
        for verdict in in_order(verdicts)
    ]
    frame = pd.DataFrame(rows)
    return frame.astype({"value": float, "low": float, "high": float})


def forest_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """One row per verdict, each on its own scale: the threshold dashed, the interval a line,
    the estimate a point (colour: outcome, shape: role), `no estimate` where there is none."""
    scale = alt.Scale(zero=False, nice=True)
    axis = alt.Axis(title=None, tickCount=4, grid=False, labelFontSize=9)
    y = alt.Y("verdict:N", title=None, axis=alt.Axis(labelLimit=360, labelFontSize=11, ticks=False))
    colour = outcome_colour()
    threshold = (
        alt.Chart()
        .mark_rule(color="black", strokeDash=[4, 3])
        .encode(x=alt.X("threshold:Q", scale=scale, axis=axis))
    )
    interval = (
        alt.Chart()
        .transform_filter("isValid(datum.low) && isValid(datum.high)")
        .mark_rule(strokeWidth=2)
        .encode(x=alt.X("low:Q", scale=scale, axis=axis), x2="high:Q", y=y, color=colour)
    )
    point = (
        alt.Chart()
        .transform_filter("isValid(datum.value)")
        .mark_point(filled=True, size=70, opacity=1)
        .encode(
            x=alt.X("value:Q", scale=scale, axis=axis),
            y=y,
            color=colour,
            shape=alt.Shape("role:N", scale=ROLE_SHAPES, title="role"),
        )
    )
    missing = (
        alt.Chart()
        .transform_filter("!isValid(datum.value)")
        .mark_text(align="left", dx=6, fontStyle="italic", color="#6b7280")
        .encode(x=alt.X("threshold:Q", scale=scale, axis=axis), y=y, text=alt.value("no estimate"))
    )
    layered = alt.layer(threshold, interval, point, missing, data=frame).properties(
        width=360, height=16
    )
    order = list(frame["verdict"])
    row = alt.Row("verdict:N", sort=order, title=None, header=alt.Header(labels=False))
    return layered.facet(row=row, spacing=6).resolve_scale(x="independent", y="independent")


def forest_png(verdicts: Sequence[Verdict]) -> str | None:
    """The forest plot as a `data:` URI of its PNG; None without verdicts."""
    if not verdicts:
        return None
    png = chart_png(forest_chart(forest_frame(verdicts)), scale=1.0)
    return "data:image/png;base64," + base64.b64encode(png).decode()


def phase_rows(
    run: RunLayout, phases: Sequence[tuple[str, str]], provenance: Mapping[str, Any]
) -> list[dict[str, str | None]]:
    """Per phase (name, notebook): its report page if there is one (relative to the index),
    when it last finished, and what the last invocation did with it."""
    last = {record["name"]: record for record in provenance["phases"]}
    rows = []
    for name, notebook in phases:
        page = run.report(notebook).with_suffix(".html")
        stamp = run.stamp(name)
        record = last.get(name, {})
        rows.append(
            {
                "phase": name,
                "report": page.name if page.is_file() else None,
                "notebook": notebook,
                "finished": read_json(stamp)["finished_at"] if stamp.is_file() else "never",
                "last": ": ".join(filter(None, [record.get("status"), record.get("reason")])),
            }
        )
    return rows


def provenance_rows(provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the last invocation ran with, one (what, value) row each."""
    git, device, packages = provenance["git"], provenance["device"], provenance["packages"]
    cuda = device["cuda_device"] if device["cuda_available"] else "not available"
    return [
        ("parameter file", provenance["parameter_file"]),
        ("status", provenance["status"]),
        ("started", provenance["started_at"]),
        ("finished", provenance["finished_at"] or "not yet"),
        (
            "git commit",
            (git["commit"] or "unknown") + (" (uncommitted changes)" * bool(git["dirty"])),
        ),
        ("python", provenance["python"].split()[0]),
        ("platform", provenance["platform"]),
        ("device", f"{device['requested']} requested; CUDA: {cuda}"),
        (
            "packages",
            ", ".join(f"{name} {packages.get(name) or 'absent'}" for name in KEY_PACKAGES),
        ),
        ("seeds", ", ".join(f"{key} {value}" for key, value in provenance["seeds"].items())),
    ]


PAGE = Environment(autoescape=True).from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Run {{ name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #111827;
       padding: 0 1rem; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; }
.lede { color: #4b5563; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.25rem 0.7rem; border-bottom: 1px solid #e5e7eb;
         vertical-align: top; overflow-wrap: break-word; }
th { background: #f9fafb; white-space: nowrap; }
td.figure { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.short { white-space: nowrap; }
.outcome { font-weight: 600; padding: 0.05rem 0.45rem; border-radius: 0.6rem; color: white; }
{{ outcome_css }}
.missing { color: #9ca3af; }
img.forest { max-width: 100%; height: auto; }
</style>
</head>
<body>
<h1>Run {{ name }}</h1>
<p class="lede">{{ lede }}</p>

<h2>Reports</h2>
<table class="reports">
<tr><th>phase</th><th>report</th><th>last finished</th><th>last invocation</th></tr>
{% for row in phases %}<tr class="phase">
<td>{{ row.phase }}</td>
<td>{% if row.report %}<a href="{{ row.report }}">{{ row.report }}</a>{% else %}<span
class="missing">{{ row.notebook }}: no report yet</span>{% endif %}</td>
<td>{{ row.finished }}</td><td>{{ row.last }}</td>
</tr>
{% endfor %}</table>

<h2>Verdicts</h2>
{% if verdicts %}
<p>{{ counts }}. Each row: the estimate (diamond: primary, circle: secondary) on its 95%
interval, the threshold dashed, coloured by the outcome; each row on its own scale.</p>
<img class="forest" src="{{ forest }}" alt="forest plot of the {{ verdicts|length }} verdicts">
<table class="verdicts">
<tr>{% for column in columns %}<th>{{ column }}</th>{% endfor %}</tr>
{% for verdict in verdicts %}<tr class="verdict" data-criterion="{{ verdict.criterion }}">
<td class="short">{{ verdict.phase }}</td><td>{{ verdict.criterion }}</td>
<td class="short">{{ verdict.role }}</td>
<td>{{ verdict.claim }}</td><td class="figure">{{ verdict[estimate] }}</td>
<td class="figure">{{ verdict.n }}</td><td class="figure">{{ verdict.threshold }}</td>
<td class="short"><span class="outcome outcome-{{ verdict.outcome }}">{{ verdict.outcome }}</span>
</td>
<td>{{ verdict.note }}</td>
</tr>
{% endfor %}</table>
{% else %}
<p class="missing">No phase has judged a criterion yet.</p>
{% endif %}

<h2>Provenance</h2>
<table class="provenance">
{% for what, value in provenance %}
<tr class="provenance"><th>{{ what }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
</body>
</html>
"""
)


def outcome_counts(table: pd.DataFrame) -> str:
    """`9 primary (2 holds, 7 inconclusive), 40 secondary (...)`."""
    parts = []
    for role, group in table.groupby("role", sort=False):
        outcomes = ", ".join(f"{n} {o}" for o, n in group["outcome"].value_counts().items())
        parts.append(f"{len(group)} {role} ({outcomes})")
    return ", ".join(parts)


def write_index(
    run: RunLayout, phases: Sequence[tuple[str, str]], provenance: Mapping[str, Any]
) -> Path:
    """Write the run's front page: `phases` are the pipeline's (name, notebook) pairs in
    order, `provenance` the last invocation as `provenance.json` records it; the verdicts are
    those `verdicts.json` holds now."""
    verdicts = Verdicts.load(run.verdicts).verdicts
    table = verdict_table(verdicts)
    finished = provenance["finished_at"] or "now"
    page = PAGE.render(
        outcome_css=outcome_css(),
        name=run.folder.name,
        lede=f"{len(verdicts)} verdicts; last invocation {provenance['status']}, "
        f"{provenance['started_at']} to {finished}",
        phases=phase_rows(run, phases, provenance),
        verdicts=table.to_dict("records"),
        columns=list(table.columns),
        estimate=ESTIMATE,
        counts=outcome_counts(table),
        forest=forest_png(verdicts),
        provenance=provenance_rows(provenance),
    )
    run.reports_index.parent.mkdir(parents=True, exist_ok=True)
    run.reports_index.write_text(page)
    return run.reports_index
