"""The threshold picker and the snapshot explorer in JupyterLab, in Chromium, driven the way a
reader drives them: Run All Cells, drag a slider with the mouse, step one with the keyboard,
click Save or Reset, pick from the dropdowns. What the page shows is checked against what the
package computes in Python for the same thresholds, and what Save writes against the files on
disk."""

from __future__ import annotations

import re

import numpy as np
import pytest
from labsession import (
    image_pixels,
    open_notebook,
    run_all_cells,
    settle,
    shown_images,
    wait_for_kernel_idle,
    wait_for_widget,
)

from teachable.records.labeled import assign_quadrants, label_frame, load_labeled, load_rows
from teachable.records.quadrants import Thresholds, load_thresholds, quadrant_counts
from teachable.records.store import read_json
from teachable.reports.charts import chart_png
from teachable.reports.explorer import label_table, snapshot_card
from teachable.reports.palette import QUADRANT_COLOURS
from teachable.reports.phase1 import threshold_charts
from teachable.vocabulary import QUADRANTS

CHARTS = ("hist_U", "hist_L", "scatter_U_L")
WIDGET_WAIT_S = 300  # Run All Cells labels nothing new, but loads the student and replays


def expected_counts(rows, thresholds: Thresholds) -> dict[str, int]:
    """Snapshots per quadrant at these thresholds, as the package assigns them."""
    placed = assign_quadrants(rows, thresholds.U, thresholds.L)
    return quadrant_counts(row.quadrant for row in placed)


def shown_counts(picker) -> dict[str, int]:
    """The picker's table: snapshots per quadrant."""
    table = picker.locator(".teachable-quadrant-counts table")
    rows = table.locator("tbody tr").evaluate_all(
        "rows => rows.map(row => [row.querySelector('th').textContent,"
        " row.querySelector('td').textContent])"
    )
    return {quadrant.strip(): int(count) for quadrant, count in rows}


def shown_charts(picker) -> dict[str, np.ndarray]:
    charts = {}
    for name in CHARTS:
        images = shown_images(picker.locator(f".teachable-chart-{name}"))
        assert len(images) == 1, f"the {name} chart shows {len(images)} images"
        charts[name] = image_pixels(images[0])
    return charts


def python_charts(rows, thresholds: Thresholds) -> dict[str, np.ndarray]:
    """The picker's charts as the package draws them for these thresholds."""
    charts = threshold_charts(label_frame(rows), thresholds)
    return {name: image_pixels(chart_png(charts[name])) for name in CHARTS}


def same_picture(shown: np.ndarray, drawn: np.ndarray) -> bool:
    """Pixel for pixel the same image (vl-convert and matplotlib draw the same bytes in the
    kernel and here)."""
    return shown.shape == drawn.shape and bool((shown == drawn).all())


def red_rule_x(pixels: np.ndarray) -> float | None:
    """Mean column of the red threshold rule (#dc2626) of a histogram, None when none shows."""
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)
    columns = np.flatnonzero(red.sum(axis=0) >= 20)
    return float(columns.mean()) if columns.size else None


def css_rgb(colour: str) -> str:
    """`#0072B2` as the browser's computed style writes it: `rgb(0, 114, 178)`."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def selected_text(select) -> str:
    """The text a dropdown shows: its selected option's, empty when none is selected."""
    return select.evaluate("s => s.selectedIndex < 0 ? '' : s.options[s.selectedIndex].text")


def readout(slider) -> float:
    return float(slider.locator(".widget-readout").inner_text())


def handle_position(slider) -> float:
    """Where the slider's handle is, as a fraction of its track."""
    track = slider.locator(".noUi-base").bounding_box()
    handle = slider.locator(".noUi-handle").bounding_box()
    return (handle["x"] + handle["width"] / 2 - track["x"]) / track["width"]


def drag_handle(page, slider, fraction: float) -> None:
    """Drag the slider's handle with the mouse to `fraction` of its track."""
    track = slider.locator(".noUi-base").bounding_box()
    handle = slider.locator(".noUi-handle").bounding_box()
    y = handle["y"] + handle["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], y, steps=12)
    page.mouse.up()


def open_explorer(page, lab, shots, step: str):
    """The snapshot explorer notebook run in JupyterLab, its widget drawn and shot as `step`."""
    open_notebook(page, lab, "notebooks/explore_snapshots.ipynb")
    run_all_cells(page)
    explorer = page.locator(".teachable-explorer")
    wait_for_widget(page, explorer, WIDGET_WAIT_S)
    settle(page, explorer)
    shots.take(explorer, step)
    return explorer


def test_threshold_picker_in_jupyterlab(page, lab, labeled_run, shots):
    phase1 = labeled_run.layout.phase1
    open_notebook(page, lab, "notebooks/01_labeling.ipynb")
    parameters_cell = page.locator(".jp-CodeCell").first.inner_text()
    assert re.search(r"interactive\s*=\s*True", parameters_cell), "the picker needs it"
    shots.take(page, "notebook-opened")

    run_all_cells(page)
    picker = page.locator(".teachable-picker")
    wait_for_widget(page, picker, WIDGET_WAIT_S)
    settle(page, picker)
    shots.take(page, "all-cells-ran")
    shots.take(picker, "picker-before")

    # The picker starts at the thresholds in use, which the cells above have just saved.
    rows = load_rows(phase1.labeled_json)
    start = load_thresholds(phase1)
    assert shown_counts(picker) == expected_counts(rows, start)
    before = shown_charts(picker)
    drawn = python_charts(rows, Thresholds(U=start.U, L=start.L, source="picker"))
    for name in CHARTS:
        assert same_picture(before[name], drawn[name]), f"{name} is not the chart of {start}"

    u_slider = picker.locator(".widget-slider", has_text="U threshold")
    l_slider = picker.locator(".widget-slider", has_text="L threshold")
    u_start, l_start = readout(u_slider), readout(l_slider)

    # U with the mouse: drag its handle to two thirds of the track (a third, from there on).
    drag_handle(page, u_slider, 0.65 if handle_position(u_slider) < 0.5 else 0.3)
    settle(page, picker)
    assert readout(u_slider) != pytest.approx(u_start), "the U slider did not move"
    counts_after_u = shown_counts(picker)
    shots.take(picker, "picker-U-dragged")

    # L with the keyboard: a few steps of its handle, then to the end of the track if no
    # snapshot has changed quadrant yet.
    left = handle_position(l_slider) >= 0.5
    handle = l_slider.locator(".noUi-handle")
    handle.focus()
    for key in ["ArrowLeft" if left else "ArrowRight"] * 3 + ["Home" if left else "End"]:
        handle.press(key)
        settle(page, picker)
        if shown_counts(picker) != counts_after_u:
            break
    assert readout(l_slider) != pytest.approx(l_start), "the L slider did not move"
    moved_counts = shown_counts(picker)
    assert moved_counts != expected_counts(rows, start), "moving both sliders changed no count"
    moved = shown_charts(picker)
    shots.take(picker, "picker-after")

    # Save: the thresholds on disk are the sliders', and the counts shown were Python's.
    picker.get_by_role("button", name="Save thresholds").click()
    status = picker.locator(".teachable-save-status")
    status.get_by_text("Saved U =").wait_for(timeout=60_000)
    wait_for_kernel_idle(page)
    shots.take(picker, "saved")
    saved = load_thresholds(phase1)
    assert saved.source == "picker"
    assert read_json(phase1.thresholds_chosen)["U"] == saved.U
    shown = pytest.approx((readout(u_slider), readout(l_slider)), rel=1e-3, abs=1e-9)
    assert shown == (saved.U, saved.L), "the readouts (4 significant digits) are the saved values"
    assert moved_counts == expected_counts(rows, saved)

    # The rules moved: the charts shown are the package's charts for the new thresholds (the
    # histograms' titles print the threshold to 3 decimals, the scatter's the counts).
    drawn = python_charts(rows, saved)
    for name in CHARTS:
        assert same_picture(moved[name], drawn[name]), f"{name} is not the chart of {saved}"
    assert not same_picture(moved["scatter_U_L"], before["scatter_U_L"])
    for name, old, new in (("hist_U", start.U, saved.U), ("hist_L", start.L, saved.L)):
        if f"{old:.3f}" != f"{new:.3f}":
            assert not same_picture(moved[name], before[name]), f"{name} did not change"
        x_before, x_after = red_rule_x(before[name]), red_rule_x(moved[name])
        assert x_before is not None and x_after is not None, f"no threshold rule in {name}"
        if abs(new - old) >= 0.02:  # a shift of a few pixels at least
            assert (x_after - x_before) * (new - old) > 0, f"the {name} rule moved the wrong way"

    # The quadrants on disk are re-assigned with the saved thresholds, in both labeled files.
    expected = {row.id: row.quadrant for row in assign_quadrants(rows, saved.U, saved.L)}
    for path in (phase1.labeled_json, phase1.labeled_jsonl):
        assert {row.id: row.quadrant for row in load_rows(path)} == expected, path.name


def test_snapshot_explorer_in_jupyterlab(page, lab, labeled_run, shots):
    rows = load_labeled(labeled_run.layout.phase1)
    counts = quadrant_counts(row.quadrant for row in rows)
    quadrant = max(QUADRANTS, key=lambda name: counts[name])
    matches = [row for row in rows if row.quadrant == quadrant]
    chosen = matches[-1]

    explorer = open_explorer(page, lab, shots, "explorer-opened")
    found = explorer.locator(".teachable-matches")
    assert found.inner_text().strip() == f"{len(rows)} of {len(rows)} snapshots match"

    explorer.locator(".widget-dropdown", has_text="quadrant").locator("select").select_option(
        label=quadrant
    )
    settle(page, explorer)
    assert found.inner_text().strip() == f"{len(matches)} of {len(rows)} snapshots match"
    snapshot = explorer.locator(".widget-dropdown", has_text="snapshot").locator("select")
    listed = snapshot.locator("option").all_inner_texts()
    assert len(listed) == len(matches)
    assert all(row.id in text for row, text in zip(matches, listed, strict=True))
    snapshot.select_option(index=len(matches) - 1)
    settle(page, explorer)
    shots.take(explorer, "explorer-card")

    card = explorer.locator(".teachable-snapshot-card")
    text = card.inner_text()
    for shown in (chosen.id, chosen.level, chosen.mission, chosen.observation):
        assert shown in text, f"the card does not show {shown!r}"
    assert f"student: {chosen.student_action}, expert: {chosen.expert_action}" in text

    # Picture and distribution: the package's own images for this snapshot, not empty ones.
    picture, _, distribution, _ = snapshot_card(chosen)
    images = shown_images(card)
    assert len(images) == 2
    assert same_picture(image_pixels(images[0]), image_pixels(picture.data)), "picture"
    assert same_picture(image_pixels(images[1]), image_pixels(distribution.data)), "distribution"
    sizes = card.locator("img").evaluate_all(
        "images => images.map(image => [image.naturalWidth, image.clientWidth])"
    )
    assert all(natural > 0 and width > 0 for natural, width in sizes)

    # Labels: every line of the package's label table (name, value, standard error, n), the
    # quadrant picked after a square of its palette colour.
    table = card.locator("table.dataframe tbody tr").evaluate_all(
        "rows => rows.map(row => [row.querySelector('th').textContent,"
        " ...[...row.querySelectorAll('td')].map(cell => cell.textContent)])"
    )
    expected = label_table(chosen)
    assert {name: cells for name, *cells in table} == {
        name: line.to_list() for name, line in expected.iterrows()
    }
    assert dict((name, cells[0]) for name, *cells in table)["quadrant"] == quadrant
    quadrant_line = card.locator("table.dataframe tbody tr", has_text="quadrant")
    swatch = quadrant_line.locator("td span[style*=background]")
    colour = swatch.evaluate("square => getComputedStyle(square).backgroundColor")
    assert colour == css_rgb(QUADRANT_COLOURS[quadrant])


def saved_choice(phase1) -> bytes | None:
    """The chosen thresholds' file as it is on disk, None when there is none."""
    path = phase1.thresholds_chosen
    return path.read_bytes() if path.is_file() else None


def test_picker_reset_restores_the_automatic_thresholds(page, lab, labeled_run, shots):
    phase1 = labeled_run.layout.phase1
    open_notebook(page, lab, "notebooks/01_labeling.ipynb")
    run_all_cells(page)
    picker = page.locator(".teachable-picker")
    wait_for_widget(page, picker, WIDGET_WAIT_S)
    settle(page, picker)
    rows = load_rows(phase1.labeled_json)
    automatic = Thresholds.model_validate(read_json(phase1.thresholds_auto))
    chosen_before = saved_choice(phase1)

    # Away from the automatic thresholds: both handles dragged to the far side of their track.
    u_slider = picker.locator(".widget-slider", has_text="U threshold")
    l_slider = picker.locator(".widget-slider", has_text="L threshold")
    for slider in (u_slider, l_slider):
        drag_handle(page, slider, 0.9 if handle_position(slider) < 0.5 else 0.1)
        settle(page, picker)
    assert readout(u_slider) != pytest.approx(automatic.U, rel=1e-3), "U did not move away"
    assert readout(l_slider) != pytest.approx(automatic.L, rel=1e-3), "L did not move away"
    shots.take(picker, "picker-moved")

    picker.get_by_role("button", name="Reset to automatic").click()
    status = picker.locator(".teachable-save-status")
    status.get_by_text("Back at the automatic thresholds").wait_for(timeout=60_000)
    settle(page, picker)
    shots.take(picker, "picker-reset")

    shown = (readout(u_slider), readout(l_slider))
    assert shown == pytest.approx((automatic.U, automatic.L), rel=1e-3, abs=1e-9)
    assert shown_counts(picker) == expected_counts(rows, automatic)
    drawn = python_charts(rows, Thresholds(U=automatic.U, L=automatic.L, source="picker"))
    after = shown_charts(picker)
    for name in CHARTS:
        assert same_picture(after[name], drawn[name]), f"{name} is not the automatic chart"
    chosen_after = saved_choice(phase1)
    assert chosen_after == chosen_before, "Reset saves nothing"


def test_explorer_dropdown_has_the_run_levels(page, lab, labeled_run, shots):
    rows = load_labeled(labeled_run.layout.phase1)
    levels = sorted({row.level for row in rows})
    explorer = open_explorer(page, lab, shots, "explorer-filters")

    level = explorer.locator(".widget-dropdown", has_text="level").locator("select")
    quadrant = explorer.locator(".widget-dropdown", has_text="quadrant").locator("select")
    assert level.locator("option").all_inner_texts() == ["any", *levels]
    assert selected_text(level) == "any", "the level box is blank"
    assert quadrant.locator("option").all_inner_texts() == ["any", *QUADRANTS]
    assert selected_text(quadrant) == "any", "the quadrant box is blank"

    # The ranges read in full: the run's own values (a single value gets 0.05 either side),
    # not the label's whole range, and not clipped by their box.
    for axis in ("U", "L"):
        text = explorer.locator(f".teachable-range-{axis}")
        values = [getattr(row, axis) for row in rows if getattr(row, axis) is not None]
        low, high = (float(part) for part in re.findall(r"-?\d+\.\d+", text.inner_text()))
        assert min(values) - 0.05 <= low <= min(values), text.inner_text()
        assert max(values) <= high <= max(values) + 0.06, text.inner_text()
        assert text.inner_text().endswith("(all)")
        clipped = text.evaluate(
            "box => [...box.querySelectorAll('*')].concat([box])"
            ".some(part => part.scrollWidth > part.clientWidth)"
        )
        assert not clipped, f"the {axis} range is cut off"

    found = explorer.locator(".teachable-matches")
    for name in levels:
        level.select_option(label=name)
        settle(page, explorer)
        expected = sum(row.level == name for row in rows)
        assert found.inner_text().strip() == f"{expected} of {len(rows)} snapshots match"
        assert selected_text(level) == name
    shots.take(explorer, "explorer-level-picked")
