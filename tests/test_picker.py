"""The threshold picker and the snapshot explorer, driven from Python as a reader drives them
with the mouse: slider values set, the button clicked, filters chosen."""

from __future__ import annotations

import numpy as np
import pytest

from teachable.parameters import Phase1Parameters
from teachable.records.env_state import EnvState
from teachable.records.labeled import (
    CPT,
    LabeledSnapshot,
    Leverage,
    TeacherAnswer,
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
    matching,
    snapshot_card,
    snapshot_text,
)
from teachable.reports.picker import ThresholdPicker, quadrant_table, slider_bounds
from teachable.vocabulary import ACTIONS
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
        else Leverage(L_local=leverage, p_student=0.0, p_forced=max(leverage, 0.0), n=4),
        cpt=CPT(
            p=p,
            ELP={"demo": 0.5, "hint": 0.25, "contrast": -0.25},
            ELP_net=0.5,
            route_net="demo",
            n_per_condition=4,
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
    labels = label_table(row)["value"].to_dict()
    assert labels["U"] == "0.5" and labels["leverage.L_local"] == "0.25"
    assert labels["cpt.p[demo]"] == "0.75" and labels["cpt.p[placebo]"] == "0.25"
    assert labels["cpt.ELP[contrast]"] == "-0.25" and labels["cpt.route_net"] == "demo"
    assert table.equals(label_table(row))


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
