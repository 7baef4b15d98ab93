"""The snapshot explorer: filter labeled snapshots by level, quadrant, U and L, and look at one
as a card: its picture, its text, the student's distribution, the teacher's answer and every
label under its name, with its standard error and rollouts. The filters and the card are plain
functions; `SnapshotExplorer` wires them to widgets.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML, Image, Markdown

from teachable.models.supervision import teacher_texts
from teachable.records.labeled import LabeledSnapshot
from teachable.reports.charts import chart_png
from teachable.reports.palette import quadrant_swatch
from teachable.reports.phase0 import distribution_chart
from teachable.reports.picker import replace_display, slider_bounds
from teachable.vocabulary import QUADRANTS, Quadrant
from teachable.world.text_world import render

Bounds = tuple[float, float]


@dataclass(frozen=True)
class SnapshotFilter:
    """Which snapshots to show; a criterion left None admits every snapshot. Ranges include
    their ends, and a snapshot without the value (say L, when leverage was skipped) is outside
    every range."""

    level: str | None = None
    quadrant: Quadrant | None = None
    U: Bounds | None = None
    L: Bounds | None = None

    def admits(self, row: LabeledSnapshot) -> bool:
        return (
            (self.level is None or row.level == self.level)
            and (self.quadrant is None or row.quadrant == self.quadrant)
            and _within(row.U, self.U)
            and _within(row.L, self.L)
        )


def _within(value: float | None, bounds: Bounds | None) -> bool:
    return bounds is None or (value is not None and bounds[0] <= value <= bounds[1])


def matching(rows: Sequence[LabeledSnapshot], chosen: SnapshotFilter) -> list[LabeledSnapshot]:
    """The rows the filter admits, in their order."""
    return [row for row in rows if chosen.admits(row)]


def picture_png(row: LabeledSnapshot) -> bytes:
    """The snapshot's grid, agent and view, as PNG bytes."""
    buffer = io.BytesIO()
    plt.imsave(buffer, render(row.state), format="png")
    return buffer.getvalue()


def snapshot_text(row: LabeledSnapshot) -> str:
    """Markdown: where the snapshot comes from, what the student read, what each side did,
    and the teacher's texts."""
    lines = [
        f"**{row.level}** `{row.id}` ({row.source} snapshot, step {row.step}, "
        f"episode {'succeeded' if row.episode_success else 'failed'})",
        f"*{row.mission}*",
        f"> {row.observation}",
        f"student: **{row.student_action}**, expert: **{row.expert_action}**",
    ]
    if row.teacher is not None:
        answer = row.teacher
        flag = "" if answer.valid else f" (invalid answer, replaced: {answer.problem})"
        lines += [
            f"teacher ({answer.backend}{f', {answer.model}' if answer.model else ''}) "
            f"suggests **{answer.suggested_action}**{flag}",
            "\n".join(f"- {field}: {text}" for field, text in teacher_texts(answer).items()),
        ]
    return "\n\n".join(lines)


LabelLine = tuple[str, object, float | None, int | None]  # name, value, standard error, n


def label_lines(row: LabeledSnapshot) -> list[LabelLine]:
    """The snapshot's labels as the plan names them: U, leverage and its two rates, the CPT's
    rate per condition and gain per format, ELP_net and its format, the quadrant; each with
    its stored standard error and its rollouts (per condition) where it has them."""
    method = f" ({row.U_method})" if row.U_method else ""
    lines: list[LabelLine] = [(f"U: the student's uncertainty{method}", row.U, None, None)]
    if (lev := row.leverage) is not None:
        lines += [
            ("L_local: leverage, p_forced - p_student", lev.L_local, lev.se, lev.n),
            ("p_student: the student's success from here", lev.p_student, None, lev.n),
            ("p_forced: success with the expert's action forced", lev.p_forced, None, lev.n),
        ]
        if lev.L_upper is not None:
            lines.append(("L_upper: the bot's own success from here", lev.L_upper, None, None))
    if (cpt := row.cpt) is not None:
        n, se = cpt.n_per_condition, cpt.ELP_se or {}
        lines += [
            (f"p[{c}]: success, {'no' if c == 'base' else f'the {c}'} patch", p, None, n)
            for c, p in cpt.p.items()
        ]
        lines += [
            (f"ELP[{f}]: p[{f}] - p[base]", gain, se.get(f), n) for f, gain in cpt.ELP.items()
        ]
        lines += [
            ("ELP_net: the best format's p - p[placebo]", cpt.ELP_net, cpt.ELP_net_se, n),
            ("route_net: that best format", cpt.route_net, None, None),
        ]
    return [*lines, ("quadrant", row.quadrant, None, None)]


def figure_text(value: object) -> str:
    """A label's value as the table prints it: numbers to 3 decimals (never `-0.000`), a
    missing one as `-`."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{round(value, 3) + 0.0:.3f}"
    return str(value)


def label_table(row: LabeledSnapshot) -> pd.DataFrame:
    """Every label of the snapshot, one per line under its name: value, standard error and n
    (the rollouts of each condition), blank where a label has none."""
    lines = label_lines(row)
    return pd.DataFrame(
        {
            "value": [figure_text(value) for _, value, _, _ in lines],
            "standard error": ["" if se is None else figure_text(se) for _, _, se, _ in lines],
            "n": ["" if n is None else str(n) for *_, n in lines],
        },
        index=pd.Index([name for name, *_ in lines], name="label"),
    )


def label_table_html(row: LabeledSnapshot) -> str:
    """The label table as HTML, the quadrant after a square of its colour."""
    table = label_table(row)
    table.loc["quadrant", "value"] = quadrant_swatch(row.quadrant)
    return table.to_html(escape=False)


def snapshot_card(row: LabeledSnapshot) -> list[object]:
    """What the notebook shows for one snapshot, as displayable objects, in order."""
    return [
        Image(data=picture_png(row), width=240),
        Markdown(snapshot_text(row)),
        Image(data=chart_png(distribution_chart(row).properties(title="student's distribution"))),
        HTML(label_table_html(row)),
    ]


def choice(description: str, names: Sequence[str], chosen: str | None) -> widgets.Dropdown:
    """A dropdown of "any" (None) and `names`, showing `chosen` (ipywidgets shows a blank box
    for a value of None, so the choice is made by index)."""
    return widgets.Dropdown(
        options=[("any", None), *((name, name) for name in names)],
        index=0 if chosen is None else 1 + list(names).index(chosen),
        description=description,
    )


def range_slider(
    axis: str, values: Sequence[float], start: Bounds | None
) -> widgets.FloatRangeSlider:
    """A range slider over the values' range (and `start`'s), in round steps, without the
    built-in readout (too narrow for a range: `range_text` says it instead)."""
    ends = [*values, *(start or ())] or [0.0, 1.0]
    low, high, step = slider_bounds(np.array(ends, float), min(ends))
    return widgets.FloatRangeSlider(
        value=start or (low, high),
        min=low,
        max=high,
        step=step,
        description=f"{axis} range",
        continuous_update=False,
        readout=False,
        style={"description_width": "initial"},
    )


def range_text(axis: str, slider: widgets.FloatRangeSlider) -> str:
    """`0.25 ≤ L ≤ 1.00` at the slider's precision, `(all)` after it over the whole track."""
    digits = max(0, -math.floor(math.log10(slider.step)))
    low, high = slider.value
    whole = " (all)" if _narrowed(slider) is None else ""
    return f"{low:.{digits}f} ≤ {axis} ≤ {high:.{digits}f}{whole}"


class SnapshotExplorer:
    """Dropdowns for level (the run's levels) and quadrant, range sliders for U and L over
    the run's values with their ranges as text, a list of the matching snapshots and the card
    of the one picked. Show it with `display(explorer.widget)`."""

    def __init__(self, rows: Sequence[LabeledSnapshot], start: SnapshotFilter | None = None):
        self.rows = list(rows)
        start = start or SnapshotFilter()
        self.level = choice("level", sorted({row.level for row in self.rows}), start.level)
        self.quadrant = choice("quadrant", QUADRANTS, start.quadrant)
        self.u_range = range_slider("U", [r.U for r in self.rows if r.U is not None], start.U)
        self.l_range = range_slider("L", [r.L for r in self.rows if r.L is not None], start.L)
        self.ranges = {axis: widgets.HTML(layout={"margin": "0 24px 0 8px"}) for axis in "UL"}
        self.snapshot = widgets.Dropdown(description="snapshot", layout={"width": "640px"})
        self.found = widgets.HTML()
        self.card = widgets.Output()
        self.shown: str | None = None
        for control in (self.level, self.quadrant, self.u_range, self.l_range):
            control.observe(self.on_filter, names="value")
        self.snapshot.observe(self.on_pick, names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.level, self.quadrant]),
                widgets.HBox([self.u_range, self.ranges["U"], self.l_range, self.ranges["L"]]),
                widgets.HBox([self.snapshot, self.found]),
                self.card,
            ]
        )
        # CSS classes that find the explorer's parts in the page (the browser tests use them)
        self.widget.add_class("teachable-explorer")
        self.found.add_class("teachable-matches")
        self.card.add_class("teachable-snapshot-card")
        for axis, text in self.ranges.items():
            text.add_class(f"teachable-range-{axis}")
        self.on_filter()

    @property
    def filter(self) -> SnapshotFilter:
        """The filter the controls show; a range slider at its full domain admits rows without
        the value too."""
        return SnapshotFilter(
            self.level.value,
            self.quadrant.value,
            _narrowed(self.u_range),
            _narrowed(self.l_range),
        )

    @property
    def matches(self) -> list[LabeledSnapshot]:
        return matching(self.rows, self.filter)

    @property
    def chosen(self) -> LabeledSnapshot | None:
        """The snapshot whose card is shown."""
        return next((row for row in self.rows if row.id == self.snapshot.value), None)

    def on_filter(self, change: dict | None = None) -> None:
        """List the snapshots the filters admit and show the first."""
        matches = self.matches
        self.ranges["U"].value = range_text("U", self.u_range)
        self.ranges["L"].value = range_text("L", self.l_range)
        self.snapshot.options = [(_caption(row), row.id) for row in matches]
        self.snapshot.value = matches[0].id if matches else None
        self.found.value = f"{len(matches)} of {len(self.rows)} snapshots match"
        self.on_pick()

    def on_pick(self, change: dict | None = None) -> None:
        """Show the card of the picked snapshot, unless it is shown already."""
        if self.card.outputs and self.snapshot.value == self.shown:
            return
        self.shown = self.snapshot.value
        row = self.chosen
        items = snapshot_card(row) if row else [Markdown("No snapshot matches these filters.")]
        replace_display(self.card, *items)


def _narrowed(slider: widgets.FloatRangeSlider) -> Bounds | None:
    """The slider's range, or None when it spans the whole domain (no filter)."""
    low, high = slider.value
    return None if (low, high) == (slider.min, slider.max) else (low, high)


def _caption(row: LabeledSnapshot) -> str:
    u = "-" if row.U is None else f"{row.U:.3f}"
    leverage = "-" if row.L is None else f"{row.L:+.2f}"
    return f"{row.level} {row.id} U={u} L={leverage} {row.quadrant or ''}"
