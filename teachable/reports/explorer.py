"""The snapshot explorer: filter labeled snapshots by level, quadrant, U and L, and look at one
as a card: its picture, its text, the student's distribution, the teacher's answer and every
label. The filters and the card are plain functions; `SnapshotExplorer` wires them to widgets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, Markdown

from teachable.models.supervision import teacher_texts
from teachable.records.labeled import LabeledSnapshot
from teachable.reports.charts import chart_png
from teachable.reports.phase0 import distribution_chart
from teachable.reports.picker import replace_display
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


def label_table(row: LabeledSnapshot) -> pd.DataFrame:
    """Every label of the snapshot, one per line: U, leverage, CPT rates and gains, quadrant."""
    labels: dict[str, object] = {"U": row.U, "U_method": row.U_method}
    if row.leverage is not None:
        labels.update({f"leverage.{k}": v for k, v in row.leverage.model_dump().items()})
    if row.cpt is not None:
        labels.update({f"cpt.p[{c}]": p for c, p in row.cpt.p.items()})
        labels.update({f"cpt.ELP[{f}]": gain for f, gain in row.cpt.ELP.items()})
        labels.update(
            {
                "cpt.ELP_net": row.cpt.ELP_net,
                "cpt.route_net": row.cpt.route_net,
                "cpt.n_per_condition": row.cpt.n_per_condition,
            }
        )
    labels["quadrant"] = row.quadrant
    return pd.DataFrame({"value": [str(v) for v in labels.values()]}, index=list(labels))


def snapshot_card(row: LabeledSnapshot) -> list[object]:
    """What the notebook shows for one snapshot, as displayable objects, in order."""
    return [
        Image(data=picture_png(row), width=240),
        Markdown(snapshot_text(row)),
        Image(data=chart_png(distribution_chart(row).properties(title="student's distribution"))),
        label_table(row),
    ]


class SnapshotExplorer:
    """Dropdowns for level and quadrant, range sliders for U and L, a list of the matching
    snapshots and the card of the one picked. Show it with `display(explorer.widget)`."""

    def __init__(self, rows: Sequence[LabeledSnapshot], start: SnapshotFilter | None = None):
        self.rows = list(rows)
        start = start or SnapshotFilter()
        levels = sorted({row.level for row in self.rows})
        self.level = widgets.Dropdown(
            options=[("any", None), *((name, name) for name in levels)],
            value=start.level,
            description="level",
        )
        self.quadrant = widgets.Dropdown(
            options=[("any", None), *((name, name) for name in QUADRANTS)],
            value=start.quadrant,
            description="quadrant",
        )
        self.u_range = self._range_slider("U", (0.0, 1.0), start.U)
        self.l_range = self._range_slider("L", (-1.0, 1.0), start.L)
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
                widgets.HBox([self.u_range, self.l_range]),
                widgets.HBox([self.snapshot, self.found]),
                self.card,
            ]
        )
        # CSS classes that find the explorer's parts in the page (the browser tests use them)
        self.widget.add_class("teachable-explorer")
        self.found.add_class("teachable-matches")
        self.card.add_class("teachable-snapshot-card")
        self.on_filter()

    @staticmethod
    def _range_slider(axis: str, domain: Bounds, start: Bounds | None) -> widgets.FloatRangeSlider:
        return widgets.FloatRangeSlider(
            value=start or domain,
            min=domain[0],
            max=domain[1],
            step=0.01,
            description=f"{axis} range",
            continuous_update=False,
        )

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
