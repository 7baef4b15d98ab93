"""Phase 1's comparison of the two experiments: failure snapshots (A) against expert snapshots
(B), labeled together by the real labeler at smoke size, and its statistics on labels set by
hand."""

from __future__ import annotations

import numpy as np
import pytest
from labeled_rows import labeled_rows

from teachable.models.teachers import make_teacher
from teachable.models.workers import LocalWorkers
from teachable.parameters import Parameters
from teachable.phases.phase1_labels import label_snapshots, phase1_snapshots
from teachable.records.labeled import LabeledSnapshot, Leverage, assign_quadrants
from teachable.records.snapshot import Snapshot, save_snapshots
from teachable.reports.phase1 import SourceComparison, share_chart

TASKS = [("GoToLocal", 2), ("GoToLocal", 3), ("PickupLoc", 2), ("PickupLoc", 3)]


@pytest.fixture(scope="module")
def rows(student) -> list[LabeledSnapshot]:
    """Sixteen snapshots on real BabyAI states: the last four decisions of four tasks."""
    return labeled_rows(student, TASKS, per_task=4)


def as_failures(rows: list[LabeledSnapshot]) -> list[LabeledSnapshot]:
    """The rows as if mined from the student's failures (experiment A)."""
    return [row.model_copy(update={"source": "student"}) for row in rows]


def unlabeled(rows: list[LabeledSnapshot]) -> list[Snapshot]:
    """The rows as Phase 0 writes them: snapshots without labels."""
    fields = set(Snapshot.model_fields)
    return [Snapshot.model_validate(row.model_dump(include=fields)) for row in rows]


def test_both_experiments_are_labeled_together_and_compared(student, rows, tmp_path):
    params = Parameters.model_validate(
        {
            "run": {"name": "both", "seed": 3, "output_root": str(tmp_path)},
            "student": {"model": "tiny", "batch_size": 16},
            "env": {"levels": ["GoToLocal", "PickupLoc"]},
            "phase1": {
                "snapshots": "both",
                "n_rollouts": 2,
                "n_per_condition": 2,
                "max_steps": 4,
                "temperature": 5.0,
                "batch_snapshots": 6,
                "min_per_quadrant": 0,
                "split": {"test_share": 0.0, "pool_share": 0.0},
            },
        }
    )
    phase0, out = params.layout.phase0, params.layout.phase1
    save_snapshots(phase0.failure_snapshots, unlabeled(as_failures(rows[:5])))
    save_snapshots(phase0.expert_snapshots, unlabeled(rows[5:9]))
    snapshots = phase1_snapshots(
        params.phase1, params.run.seed, phase0, params.layout.split
    ).labeled
    assert [s.source for s in snapshots] == ["student"] * 5 + ["expert"] * 4
    teacher = make_teacher(params)
    report = label_snapshots(
        snapshots,
        params.phase1,
        params.run.seed,
        LocalWorkers(student),
        teacher,
        out,
        progress=False,
    )

    comparison = SourceComparison.of(report.rows, resamples=200, seed=0)
    assert comparison.both
    for label, by in comparison.labels.items():
        assert (by.failure.n, by.expert.n, by.failure_minus_expert.n) == (5, 4, 9), label
        assert by.failure_minus_expert.value == pytest.approx(
            by.failure.value - by.expert.value, abs=1e-5
        )
    failures = [row for row in report.rows if row.source == "student"]
    assert comparison.labels["L_local"].failure.value == pytest.approx(
        np.mean([row.L for row in failures]), abs=1e-6
    )
    for name, count in (("failure", 5), ("expert", 4)):
        shares = comparison.quadrant_shares[name]
        assert [e.n for e in shares.values()] == [count] * 4
        assert sum(e.value for e in shares.values()) == pytest.approx(1.0)

    comparison.save(out.source_comparison)
    assert SourceComparison.load(out.source_comparison) == comparison
    table = comparison.label_table()
    assert list(table["snapshots"].unique()) == ["failure (A)", "expert (B)", "failure - expert"]
    assert len(table) == 9 and len(comparison.share_table()) == 8
    assert share_chart(comparison).to_dict()["layer"]


def _set_labels(rows: list[LabeledSnapshot], u: np.ndarray, l_local: np.ndarray, elp: np.ndarray):
    """Rows with U, L_local and ELP_net set, in quadrants cut at U 0.5 and L 0.2."""
    labeled = [
        row.model_copy(
            update={
                "U": float(u[i]),
                "leverage": Leverage(L_local=float(l_local[i]), p_student=0, p_forced=0, n=4),
                "cpt": row.cpt.model_copy(update={"ELP_net": float(elp[i])}),
            }
        )
        for i, row in enumerate(rows)
    ]
    return assign_quadrants(labeled, 0.5, 0.2)


def test_a_clear_difference_excludes_zero_and_no_difference_includes_it(rows):
    rng = np.random.default_rng(11)
    n = len(rows) // 2
    # failures: higher U and leverage (by 0.4), the same ELP_net distribution
    failure = _set_labels(
        as_failures(rows[:n]),
        0.7 + rng.normal(0, 0.05, n),
        0.4 + rng.normal(0, 0.05, n),
        rng.normal(0.1, 0.2, n),
    )
    expert = _set_labels(
        rows[n:], 0.3 + rng.normal(0, 0.05, n), rng.normal(0, 0.05, n), rng.normal(0.1, 0.2, n)
    )
    comparison = SourceComparison.of(failure + expert, resamples=500, seed=0)
    differences = {k: by.failure_minus_expert for k, by in comparison.labels.items()}
    u, l_local, elp = differences["U"], differences["L_local"], differences["ELP_net"]
    assert 0.3 < u.low <= u.value <= u.high < 0.5
    assert 0.3 < l_local.low <= l_local.high < 0.5
    assert elp.low < 0 < elp.high
    for label in ("U", "L_local", "ELP_net"):
        by = comparison.labels[label]
        assert by.failure.low <= by.failure.value <= by.failure.high
    assert comparison.quadrant_shares["failure"]["Q1_highU_highL"].value == 1.0
    assert comparison.quadrant_shares["expert"]["Q1_highU_highL"].value == 0.0
    q3 = comparison.quadrant_shares["expert"]["Q3_lowU_lowL"]
    assert (q3.value, q3.n) == (1.0, n) and q3.low < 0.75  # Wilson: n = 8 leaves room below 1
    assert SourceComparison.of(failure + expert, resamples=500, seed=0) == comparison


def test_one_experiment_alone_has_nothing_to_compare(rows):
    comparison = SourceComparison.of(rows, resamples=200, seed=0)
    assert not comparison.both
    assert comparison.labels["U"].failure.n == 0 and comparison.labels["U"].expert.n == len(rows)
    assert comparison.labels["U"].failure_minus_expert.value is None
    assert all(e.value is None for e in comparison.quadrant_shares["failure"].values())
