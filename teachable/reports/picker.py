"""The threshold picker: U and L sliders over the threshold charts, live counts per quadrant
in the quadrants' colours, a button that puts the sliders back at the automatic thresholds and
one that saves the chosen thresholds and re-assigns the quadrants.

Everything it does happens in its callbacks, so a test drives it from Python the way a reader
does with the mouse: set a slider's value, click the button. The charts are the ones of
`threshold_plots/`, redrawn as PNG (no CDN) into output widgets as the sliders move.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd
from IPython.display import Image

from teachable.models.quadrant_placement import (
    QuadrantAssignment,
    automatic_thresholds,
    place_in_quadrants,
)
from teachable.parameters import Phase1Parameters
from teachable.records.labeled import LabeledSnapshot, label_frame
from teachable.records.layout import Phase1Layout
from teachable.records.quadrants import Thresholds, quadrant_counts, with_quadrants
from teachable.reports.charts import chart_png
from teachable.reports.palette import quadrant_swatch
from teachable.reports.phase1 import threshold_charts
from teachable.vocabulary import QUADRANTS, Quadrant


def quadrant_table(frame: pd.DataFrame, u_threshold: float, l_threshold: float) -> pd.DataFrame:
    """Per quadrant: how many snapshots, their share, and their mean U, L and ELP_net."""
    placed = with_quadrants(frame.dropna(subset=["U"]), u_threshold, l_threshold)
    placed = placed.astype({"ELP_net": float})
    table = placed.groupby("quadrant")[["U", "L", "ELP_net"]].mean().add_prefix("mean ")
    counts = pd.Series(quadrant_counts(placed["quadrant"]), name="snapshots")
    table = table.reindex(list(QUADRANTS)).join(counts)
    table["share"] = table["snapshots"] / max(int(counts.sum()), 1)
    return table[["snapshots", "share", "mean U", "mean L", "mean ELP_net"]].round(3)


def quadrant_table_html(table: pd.DataFrame) -> str:
    """The quadrant table as HTML, each quadrant's name after a square of its colour."""
    return table.rename(index=quadrant_swatch).to_html(escape=False)


def slider_bounds(values: np.ndarray, start: float) -> tuple[float, float, float]:
    """Minimum, maximum and step of a slider over `values` that also reaches `start`: a round
    step, ends on its grid, and the maximum above the data, so every snapshot can be put below
    the threshold. A single value gets a range of 0.1 around it."""
    low, high = min(float(values.min()), start), max(float(values.max()), start)
    if high - low < 1e-6:  # a single value: a range around it
        low, high = low - 0.05, high + 0.05
    step = 10.0 ** math.floor(math.log10((high - low) / 100))
    grid_low = min(round(math.floor(round(low / step, 6)) * step, 12), low)
    grid_high = round((math.floor(round(high / step, 6)) + 1) * step, 12)
    return grid_low, grid_high, step


def replace_display(output: widgets.Output, *items: object) -> None:
    """Make an output widget show `items` instead of what it showed (with or without a kernel,
    which `with output:` needs)."""
    output.outputs = ()
    for item in items:
        output.append_display_data(item)


class ThresholdPicker:
    """Sliders for the U and L thresholds over the two histograms and the U x L scatter; the
    "Reset to automatic" button puts them back at the automatic thresholds (the parameters'
    quantile cuts); the "Save thresholds" button writes `quadrant_thresholds.json` into `out`
    and rewrites the labeled files with the quadrants of those thresholds. The sliders start at
    `start`, else at the automatic thresholds. Show it with `display(picker.widget)`."""

    def __init__(
        self,
        rows: Sequence[LabeledSnapshot],
        out: Phase1Layout,
        phase1: Phase1Parameters,
        start: Thresholds | None = None,
    ) -> None:
        self.rows = list(rows)
        self.out = out
        self.phase1 = phase1
        self.frame = label_frame(self.rows)
        measured = self.frame.dropna(subset=["U", "L"])
        if measured.empty:
            raise ValueError(
                "the threshold picker needs snapshots with both U and leverage (L); "
                "leverage is not measured when phase1.skip_leverage is set"
            )
        self.automatic = automatic_thresholds(self.rows, phase1)
        start = start or self.automatic
        self.u_slider = self._slider("U", measured["U"].to_numpy(), start.U)
        self.l_slider = self._slider("L", measured["L"].to_numpy(), start.L)
        self.save_button = widgets.Button(
            description="Save thresholds", button_style="primary", icon="save"
        )
        self.reset_button = widgets.Button(
            description="Reset to automatic",
            icon="undo",
            tooltip="the parameters' quantile cuts of U and L; Save keeps them",
            layout=widgets.Layout(width="auto"),
        )
        self.charts = {name: widgets.Output() for name in ("hist_U", "hist_L", "scatter_U_L")}
        self.table = widgets.HTML()
        self.status = widgets.HTML()
        for slider in (self.u_slider, self.l_slider):
            slider.observe(self.on_change, names="value")
        self.save_button.on_click(self.save)
        self.reset_button.on_click(self.reset)
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.u_slider, self.l_slider]),
                widgets.HBox([self.charts["hist_U"], self.charts["hist_L"]]),
                widgets.HBox(
                    [
                        self.charts["scatter_U_L"],
                        widgets.VBox(
                            [
                                self.table,
                                widgets.HBox([self.save_button, self.reset_button]),
                                self.status,
                            ]
                        ),
                    ]
                ),
            ]
        )
        self._name_elements()
        self.on_change()

    def _name_elements(self) -> None:
        """CSS classes that find the picker's parts in the page (the browser tests use them)."""
        self.widget.add_class("teachable-picker")
        for name, chart in self.charts.items():
            chart.add_class(f"teachable-chart-{name}")
        self.table.add_class("teachable-quadrant-counts")
        self.status.add_class("teachable-save-status")

    @staticmethod
    def _slider(axis: str, values: np.ndarray, start: float) -> widgets.FloatSlider:
        low, high, step = slider_bounds(values, start)
        return widgets.FloatSlider(
            value=start,
            min=low,
            max=high,
            step=step,
            description=f"{axis} threshold",
            continuous_update=False,
            readout_format=".4g",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="420px"),
        )

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds the sliders show."""
        u, leverage = self._values()
        return Thresholds(U=u, L=leverage, source="picker")

    @property
    def counts(self) -> dict[Quadrant, int]:
        """Snapshots per quadrant at the sliders' thresholds."""
        placed = with_quadrants(self.frame.dropna(subset=["U"]), *self._values())
        return quadrant_counts(placed["quadrant"])

    def _values(self) -> tuple[float, float]:
        """The sliders' values, rounded like the automatic thresholds."""
        return round(self.u_slider.value, 6), round(self.l_slider.value, 6)

    def on_change(self, change: dict | None = None) -> None:
        """Redraw the charts and the table for the sliders' thresholds."""
        for name, chart in threshold_charts(self.frame, self.thresholds).items():
            replace_display(self.charts[name], Image(data=chart_png(chart)))
        self.table.value = quadrant_table_html(quadrant_table(self.frame, *self._values()))

    def reset(self, button: widgets.Button | None = None) -> None:
        """Put both sliders back at the automatic thresholds and redraw once; nothing is saved
        until Save."""
        sliders = (self.u_slider, self.l_slider)
        for slider in sliders:
            slider.unobserve(self.on_change, names="value")
        self.u_slider.value, self.l_slider.value = self.automatic.U, self.automatic.L
        for slider in sliders:
            slider.observe(self.on_change, names="value")
        self.on_change()
        self.status.value = (
            f"Back at the automatic thresholds U = {self.automatic.U:.4g}, "
            f"L = {self.automatic.L:.4g} (not saved)."
        )

    def save(self, button: widgets.Button | None = None) -> QuadrantAssignment:
        """Save the sliders' thresholds and re-assign every row's quadrant with them."""
        thresholds = self.thresholds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small quadrants are listed in the status instead
            assignment = place_in_quadrants(self.rows, self.out, self.phase1, thresholds)
        self.rows = assignment.rows
        lines = [
            f"Saved U = {thresholds.U:.4g}, L = {thresholds.L:.4g} to "
            f"<code>{self.out.thresholds_chosen}</code>; quadrants re-assigned.",
            *(f"&#9888; {warning}" for warning in assignment.warnings),
        ]
        self.status.value = "<br>".join(lines)
        return assignment
