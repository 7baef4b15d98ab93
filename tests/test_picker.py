"""The threshold picker and the snapshot explorer, driven from Python as a reader drives them
with the mouse: slider values set, the buttons clicked, filters chosen; the quadrants' one
palette; charts whose axes fit the data and whose discrete L is spread apart for display only."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import altair as alt
import numpy as np
import pandas as pd
import pytest

from teachable.parameters import Phase1Parameters
from teachable.records.cpt_validation import RAW, UTILITY
from teachable.records.env_state import EnvState
from teachable.records.estimate import Estimate
from teachable.records.labeled import (
    CPT,
    LabeledSnapshot,
    Leverage,
    TeacherAnswer,
    label_frame,
    load_labeled,
    save_labeled,
)
from teachable.records.layout import Phase1Layout
from teachable.records.quadrants import Thresholds
from teachable.records.snapshot import snapshot_id
from teachable.records.store import read_json, read_jsonl
from teachable.reports.explorer import (
    SnapshotExplorer,
    SnapshotFilter,
    label_table,
    label_table_html,
    matching,
    snapshot_card,
    snapshot_text,
)
from teachable.reports.palette import CELL_COLOURS, QUADRANT_COLOURS
from teachable.reports.phase1 import JITTER, histogram_chart, scatter_chart
from teachable.reports.phase1b import scatter_chart as cpt_scatter_chart
from teachable.reports.phase2 import loss_chart
from teachable.reports.picker import ThresholdPicker, quadrant_table, slider_bounds
from teachable.vocabulary import ACTIONS, QUADRANTS
from teachable.world.text_world import env_id

# (level, seed, U, L): hand-placed so that thresholds land on some of the points
POINTS = (
    ("GoToLocal", 1, 0.1, -0.5),
    ("GoToLocal", 2, 0.3, 0.0),
    ("PickupLoc", 3, 0.5, 0.25),
    ("PickupLoc", 4, 0.7, 0.5),
    ("GoToLocal", 5, 0.9, 1.0),
    ("PickupLoc", 6, 0.5, -0.25),
)
PHASE1 = Phase1Parameters(min_per_quadrant=2)


def labeled(level: str, seed: int, u: float, leverage: float | None) -> LabeledSnapshot:
    """A labeled snapshot at the start of a real task, with the given U and L."""
    state = EnvState(env_id(level), seed)
    p = {"base": 0.25, "placebo": 0.25, "demo": 0.75, "hint": 0.5, "contrast": 0.0}
    return LabeledSnapshot(
        id=snapshot_id(state),
        source="student",
        env_state=state,
        level=level,
        mission="go to the red ball",
        observation="You see a red ball 2 steps forward.",
        valid_actions=list(ACTIONS),
        student_action="turn left",
        student_distribution=dict(zip(ACTIONS, (0.5, 0.1, 0.3, 0.05, 0.03, 0.02), strict=True)),
        expert_action="go forward",
        step=0,
        episode_success=False,
        U=u,
        U_method="entropy",
        leverage=None
        if leverage is None
        else Leverage(L_local=leverage, p_student=0.0, p_forced=max(leverage, 0.0), n=4, se=0.125),
        cpt=CPT(
            p=p,
            ELP={"demo": 0.5, "hint": 0.25, "contrast": -0.25},
            ELP_net=0.5,
            route_net="demo",
            n_per_condition=4,
            ELP_se={"demo": 0.25, "hint": 0.2, "contrast": -1e-9},
            ELP_net_se=0.3,
        ),
        teacher=TeacherAnswer(
            suggested_action="go forward",
            diagnosis="The red ball is ahead.",
            hint="Walk towards it.",
            contrast="'go forward' reaches the ball; 'turn left' faces away from it.",
            backend="bot",
        ),
    )


@pytest.fixture
def rows() -> list[LabeledSnapshot]:
    return [labeled(*point) for point in POINTS]


@pytest.fixture
def picker(rows, tmp_path) -> ThresholdPicker:
    save_labeled(Phase1Layout(tmp_path), rows)
    return ThresholdPicker(rows, Phase1Layout(tmp_path), PHASE1)


def _png(output) -> bytes:
    (shown,) = output.outputs
    return shown["data"]["image/png"]


def test_sliders_start_at_the_automatic_thresholds_and_span_the_data(picker):
    # the cuts nearest the median of the six points
    assert (picker.u_slider.value, picker.l_slider.value) == pytest.approx((0.5, 0.25))
    assert sum(p[2] < picker.u_slider.value for p in POINTS) == 2  # 0.5 twice, on the cut
    assert sum(p[3] < picker.l_slider.value for p in POINTS) == 3
    assert picker.u_slider.min <= 0.1 and picker.u_slider.max > 0.9
    assert picker.l_slider.min <= -0.5 and picker.l_slider.max > 1.0
    assert all(output.outputs for output in picker.charts.values())


def test_slider_bounds_are_round_and_reach_the_data_the_start_and_a_single_value():
    low, high, step = slider_bounds(np.array([0.0980554, 0.9353252]), 0.5)
    assert (low, high, step) == pytest.approx((0.098, 0.936, 0.001))
    low, high, step = slider_bounds(np.array([0.2, 0.4]), 0.9)
    assert (low, high, step) == pytest.approx((0.2, 0.901, 0.001))
    low, high, step = slider_bounds(np.array([0.3, 0.3]), 0.3)
    assert (low, high, step) == pytest.approx((0.25, 0.351, 0.001))


def test_moving_the_sliders_updates_counts_table_and_charts(picker):
    picker.u_slider.value, picker.l_slider.value = 0.5, 0.0
    # on a threshold counts as high: (0.5, 0.25), (0.7, 0.5), (0.9, 1) are Q1, (0.5, -0.25)
    # is Q2, (0.1, -0.5) is Q3 and (0.3, 0.0) is Q4
    expected = {"Q1_highU_highL": 3, "Q2_highU_lowL": 1, "Q3_lowU_lowL": 1, "Q4_lowU_highL": 1}
    assert picker.counts == expected
    assert quadrant_table(picker.frame, 0.5, 0.0)["snapshots"].to_dict() == expected
    before = {name: _png(output) for name, output in picker.charts.items()}

    picker.u_slider.value, picker.l_slider.value = 0.8, 0.4
    expected = {"Q1_highU_highL": 1, "Q2_highU_lowL": 0, "Q3_lowU_lowL": 4, "Q4_lowU_highL": 1}
    assert picker.counts == expected
    table = quadrant_table(picker.frame, 0.8, 0.4)
    assert table["snapshots"].to_dict() == expected
    assert table.loc["Q4_lowU_highL", "mean L"] == 0.5
    assert ">4</td>" in picker.table.value
    assert all(_png(output) != before[name] for name, output in picker.charts.items())


def test_save_writes_the_thresholds_and_reassigns_the_labeled_files(picker, tmp_path):
    picker.u_slider.value, picker.l_slider.value = 0.8, 0.4
    picker.save_button.click()

    saved = Thresholds.model_validate(read_json(tmp_path / "quadrant_thresholds.json"))
    assert (saved.U, saved.L, saved.source) == (0.8, 0.4, "picker")
    assert (tmp_path / "quadrant_thresholds_auto.json").is_file()
    expected = {
        (0.1, -0.5): "Q3_lowU_lowL",
        (0.3, 0.0): "Q3_lowU_lowL",
        (0.5, 0.25): "Q3_lowU_lowL",
        (0.7, 0.5): "Q4_lowU_highL",
        (0.9, 1.0): "Q1_highU_highL",
        (0.5, -0.25): "Q3_lowU_lowL",
    }
    for written in (
        read_json(tmp_path / "labeled_snapshots.json"),
        read_jsonl(tmp_path / "labeled_snapshots.jsonl"),
    ):
        assert {(r["U"], r["leverage"]["L_local"]): r["quadrant"] for r in written} == expected
    assert {(r.U, r.L): r.quadrant for r in load_labeled(Phase1Layout(tmp_path))} == expected
    assert "quadrant_thresholds.json" in picker.status.value
    assert "Q2_highU_lowL has 0 snapshot(s)" in picker.status.value


def test_picker_refuses_rows_without_leverage(rows, tmp_path):
    no_leverage = [labeled(level, seed, u, None) for level, seed, u, _ in POINTS]
    with pytest.raises(ValueError, match="skip_leverage"):
        ThresholdPicker(no_leverage, Phase1Layout(tmp_path), PHASE1)


def _ids(rows) -> set[str]:
    return {row.id for row in rows}


def test_filters_return_exactly_the_matching_rows(rows):
    placed = [
        row.model_copy(update={"quadrant": "Q1_highU_highL" if row.U >= 0.5 else "Q3_lowU_lowL"})
        for row in rows
    ]
    by_seed = {row.env_state.seed: row.id for row in placed}

    def seeds(*wanted: int) -> set[str]:
        return {by_seed[seed] for seed in wanted}

    assert matching(placed, SnapshotFilter()) == placed
    assert _ids(matching(placed, SnapshotFilter(level="GoToLocal"))) == seeds(1, 2, 5)
    assert _ids(matching(placed, SnapshotFilter(quadrant="Q3_lowU_lowL"))) == seeds(1, 2)
    assert _ids(matching(placed, SnapshotFilter(U=(0.3, 0.5)))) == seeds(2, 3, 6)
    assert _ids(matching(placed, SnapshotFilter(L=(-0.25, 0.25)))) == seeds(2, 3, 6)
    both = SnapshotFilter(level="PickupLoc", quadrant="Q1_highU_highL", U=(0.5, 0.6), L=(0, 1))
    assert _ids(matching(placed, both)) == seeds(3)
    assert matching(placed, SnapshotFilter(level="OpenDoor")) == []
    unmeasured = labeled("GoToLocal", 7, 0.4, None)
    assert matching([unmeasured], SnapshotFilter(L=(-1, 1))) == []
    assert matching([unmeasured], SnapshotFilter(U=(0, 1))) == [unmeasured]


def test_snapshot_card_shows_picture_text_distribution_and_every_label(rows):
    row = rows[2]
    picture, text, distribution, table = snapshot_card(row)
    assert picture.data[:8] == b"\x89PNG\r\n\x1a\n" and distribution.data[:8] == picture.data[:8]
    words = snapshot_text(row)
    for part in (row.mission, row.observation, "The red ball is ahead.", "Walk towards it."):
        assert part in words and part in text.data
    assert table.data == label_table_html(row)
    labels = label_table(row)
    assert labels.loc["U: the student's uncertainty (entropy)", "value"] == "0.500"
    assert labels.loc["p[demo]: success, the demo patch"].to_list() == ["0.750", "", "4"]
    assert labels.loc["route_net: that best format", "value"] == "demo"


def test_label_table_names_each_label_with_its_standard_error_and_n(rows):
    labels = label_table(rows[2])
    assert list(labels.columns) == ["value", "standard error", "n"]
    assert not any(re.fullmatch(r"(leverage|cpt)\.\w+(\[\w+\])?", name) for name in labels.index)
    by_symbol = {name.split(":")[0]: line for name, line in labels.iterrows()}
    assert by_symbol["L_local"].to_list() == ["0.250", "0.125", "4"]
    assert by_symbol["ELP[hint]"].to_list() == ["0.250", "0.200", "4"]
    assert by_symbol["ELP_net"].to_list() == ["0.500", "0.300", "4"]
    assert by_symbol["ELP[contrast]"]["standard error"] == "0.000", "never -0.000"
    assert by_symbol["p_student"]["standard error"] == "", "a rate stores no standard error"
    assert not labels.isna().any().any()


def test_explorer_lists_the_matches_and_shows_the_picked_card(rows):
    explorer = SnapshotExplorer(rows)
    assert [value for _, value in explorer.snapshot.options] == [row.id for row in rows]
    assert explorer.chosen == rows[0] and len(explorer.card.outputs) == 4

    explorer.level.value = "PickupLoc"
    explorer.u_range.value = (0.6, 1.0)
    assert [value for _, value in explorer.snapshot.options] == [rows[3].id]
    assert explorer.chosen == rows[3]
    assert rows[3].id in explorer.card.outputs[1]["data"]["text/markdown"]
    assert explorer.found.value.startswith("1 of 6")

    explorer.l_range.value = (0.9, 1.0)
    assert explorer.snapshot.options == () and explorer.chosen is None
    assert "No snapshot matches" in explorer.card.outputs[0]["data"]["text/markdown"]


def test_explorer_dropdowns_show_any_and_the_run_levels_and_sliders_fit_the_data(rows):
    explorer = SnapshotExplorer(rows)
    assert explorer.level.index == 0 and explorer.level.label == "any", "not a blank box"
    assert [label for label, _ in explorer.level.options] == ["any", "GoToLocal", "PickupLoc"]
    assert explorer.quadrant.index == 0 and explorer.quadrant.label == "any"
    assert (explorer.l_range.min, explorer.u_range.min) == pytest.approx((-0.5, 0.1))
    assert 1.0 <= explorer.l_range.max < 1.05 and 0.9 <= explorer.u_range.max < 0.95
    assert explorer.ranges["L"].value == "-0.50 ≤ L ≤ 1.01 (all)"
    explorer.l_range.value = (0.0, 0.5)
    assert explorer.ranges["L"].value == "0.00 ≤ L ≤ 0.50"
    assert explorer.found.value.startswith("3 of 6")

    started = SnapshotExplorer(rows, SnapshotFilter(level="PickupLoc", quadrant="Q3_lowU_lowL"))
    assert (started.level.label, started.quadrant.label) == ("PickupLoc", "Q3_lowU_lowL")


def test_reset_restores_the_automatic_thresholds_and_saves_nothing(rows, tmp_path):
    save_labeled(Phase1Layout(tmp_path), rows)
    start = Thresholds(U=0.8, L=0.4, source="picker")
    picker = ThresholdPicker(rows, Phase1Layout(tmp_path), PHASE1, start)
    automatic = ThresholdPicker(rows, Phase1Layout(tmp_path / "auto"), PHASE1)
    assert (picker.thresholds.U, picker.thresholds.L) == (0.8, 0.4)
    picker.u_slider.value, picker.l_slider.value = 0.3, -0.25

    picker.reset_button.click()
    assert (picker.u_slider.value, picker.l_slider.value) == pytest.approx((0.5, 0.25))
    assert picker.thresholds == automatic.thresholds
    assert picker.counts == automatic.counts
    assert picker.table.value == automatic.table.value
    assert all(_png(picker.charts[name]) == _png(automatic.charts[name]) for name in picker.charts)
    assert "automatic thresholds" in picker.status.value
    assert not (tmp_path / "quadrant_thresholds.json").exists(), "reset saves nothing"


def _colour_scale(spec: dict) -> dict:
    """The colour scale of the first layer (or the chart) that encodes colour by a field."""
    for part in [spec, *spec.get("layer", []), spec.get("spec", {})]:
        colour = part.get("encoding", {}).get("color", {})
        if "field" in colour:
            return colour.get("scale", {})
    raise AssertionError("no colour encoding by field")


def test_every_chart_coloured_by_quadrant_takes_the_one_palette(rows):
    palette = [QUADRANT_COLOURS[q] for q in QUADRANTS]
    assert len(set(palette)) == len(QUADRANTS), "each quadrant its own colour"
    scatter = _colour_scale(scatter_chart(label_frame(rows), 0.5, 0.25).to_dict())
    assert (scatter["domain"], scatter["range"]) == (list(QUADRANTS), palette)
    micro = pd.DataFrame({"quadrant": list(QUADRANTS), "ELP_net": 0.1, UTILITY: 0.1, RAW: 0.1})
    rho = Estimate(value=0.5, low=0.1, high=0.8, n=4)
    gate = SimpleNamespace(spearman=rho, raw_spearman=rho, outcome="holds")
    cpt = _colour_scale(cpt_scatter_chart(micro, gate).to_dict())
    assert (cpt["domain"], cpt["range"]) == (list(QUADRANTS), palette)
    entries = [
        SimpleNamespace(id=cell, format="demo", quadrant=cell, losses=[1.0, 0.5])
        for cell in ("Q1_highU_highL", "all")
    ]
    cells = _colour_scale(loss_chart(entries).to_dict())
    assert dict(zip(cells["domain"], cells["range"], strict=True)) == dict(CELL_COLOURS)
    assert all(CELL_COLOURS[q] == QUADRANT_COLOURS[q] for q in QUADRANTS)


PACKAGE = Path(__file__).resolve().parents[1] / "teachable"


def test_the_palette_is_spelled_in_one_module_only():
    palette = {colour.lower() for colour in CELL_COLOURS.values()}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "palette.py":
            continue
        text = path.read_text()
        assert not re.search(r"QUADRANT_COLOU?RS?\s*=", text), f"{path} defines quadrant colours"
        spelled = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}", text)} & palette
        assert spelled == set(), f"{path} spells the palette's {sorted(spelled)}"


def test_picker_table_shows_each_quadrant_in_its_colour(picker):
    for quadrant in QUADRANTS:
        assert f'background:{QUADRANT_COLOURS[quadrant]}"></span>{quadrant}' in picker.table.value


def _fitted(chart: alt.TopLevelMixin, channel: str) -> list[float]:
    """The explicit domain (or bin extent) of the first layer's `channel`."""
    encoding = chart.to_dict()["layer"][0]["encoding"][channel]
    return encoding["bin"]["extent"] if "bin" in encoding else encoding["scale"]["domain"]


def test_axes_fit_the_data_not_the_labels_whole_range(rows):
    never_negative = [labeled(*point[:3], abs(point[3])) for point in POINTS]
    frame = label_frame(never_negative)  # L in 0..1, U in 0.1..0.9
    assert _fitted(histogram_chart(frame, "L", 0.25), "x") == pytest.approx([-0.1, 1.1])
    assert _fitted(histogram_chart(frame, "U", 0.5), "x") == pytest.approx([0.05, 0.95])
    scatter = scatter_chart(frame, 0.5, 0.25)
    low, high = _fitted(scatter, "y")
    shown = scatter.layer[0].data["L shown"]
    assert -0.1 <= low <= shown.min() and shown.max() <= high <= 1.1
    u_low, u_high = _fitted(scatter, "x")
    assert 0.05 <= u_low <= 0.1 and 0.9 <= u_high <= 0.95
    assert _fitted(histogram_chart(frame, "L", -0.5), "x")[0] <= -0.5, "the threshold shows"
    sure = frame.assign(U=0.001)  # a student sure of every action: U stays at or above 0
    assert _fitted(histogram_chart(sure, "U", 0.001), "x") == pytest.approx([0.0, 0.05])


def test_discrete_L_is_spread_for_display_only_and_on_its_own_side(picker, rows, tmp_path):
    levels = [0.0, 0.25] * 8  # rates over 4 rollouts pile up on two lines
    piled = [labeled("GoToLocal", seed, 0.05 * seed, L) for seed, L in enumerate(levels, 10)]
    frame = label_frame(piled)
    untouched = frame.copy()
    points = scatter_chart(frame, 0.6, 0.25).layer[0].data
    pd.testing.assert_frame_equal(frame, untouched)
    assert points["L"].to_list() == levels, "the exact L stays, for the tooltip and the counts"
    moved = points["L shown"] - points["L"]
    assert moved.abs().max() <= JITTER * 0.25 + 1e-12
    assert moved.round(9).nunique() == len(levels), "equal values are drawn apart"
    assert ((points["L shown"] >= 0.25) == (points["L"] >= 0.25)).all(), "never across the line"
    again = scatter_chart(frame.iloc[::-1], 0.6, 0.25).layer[0].data.set_index("id")
    assert again["L shown"].to_dict() == points.set_index("id")["L shown"].to_dict()

    picker.u_slider.value, picker.l_slider.value = 0.5, 0.0
    picker.save_button.click()
    exact = {row.id: row.L for row in rows}
    assert {row.id: row.L for row in load_labeled(Phase1Layout(tmp_path))} == exact
    assert {row.id: row.L for row in picker.rows} == exact
