"""Phase 2's shuffled-target control: `baseline_all_demo`'s rows and examples with their targets
permuted per seed, the permutation in the run's key, and the permuted targets what its adapter
trains on."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest
from labeled_rows import labeled_rows

from teachable.models.instrument import Instrument
from teachable.models.supervision import sft_examples, sft_targets
from teachable.models.training_runs import MatrixRun, Training, run_key, train_adapter
from teachable.parameters import LoraParameters, Phase2Parameters, StudentParameters
from teachable.phases.phase2_matrix import plan_matrix
from teachable.records.evaluation import CONTROL

TASKS = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10)] + [("PickupLoc", 2), ("PickupLoc", 3)]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def rows(student):
    """Three snapshots near the end of each of eight bot runs, so that their recovery
    trajectories are cut short at different lengths."""
    return labeled_rows(student, TASKS, per_task=3)


def runs_of(plan: list[MatrixRun], seed: int) -> dict[str, MatrixRun]:
    return {run.cell: run for run in plan if run.seed == seed}


@pytest.mark.parametrize("demo_steps", [1, 3])
def test_the_control_trains_on_the_baselines_rows_with_its_targets_permuted(rows, demo_steps):
    phase2 = Phase2Parameters(n_train=2, seeds=SEEDS, demo_steps=demo_steps)
    plan = plan_matrix(rows, phase2, seed=0)
    truth = sft_targets(rows, "demo", demo_steps)
    assert len(set(truth)) > 1, "the rows must hold several actions for a permutation to show"
    assert (len(truth) == len(rows)) if demo_steps == 1 else (len(truth) > len(rows))
    for seed in SEEDS:
        cells = runs_of(plan, seed)
        control, baseline = cells[CONTROL], cells["baseline_all_demo"]
        assert control.skip is None and control.quadrant == "shuffled"
        assert (control.rows, control.format, control.demo_steps) == (
            baseline.rows,
            baseline.format,
            baseline.demo_steps,
        )
        assert baseline.targets is None
        assert Counter(control.targets) == Counter(truth)
        assert list(control.targets) != truth, "a permutation that moves targets"
        trained = sft_examples(control.rows, "demo", 0, demo_steps, control.targets)
        true = sft_examples(baseline.rows, "demo", 0, demo_steps)
        assert [e.prompt for e in trained] == [e.prompt for e in true]
        assert [e.target for e in trained] == list(control.targets)


def test_the_control_follows_the_baselines_in_the_plan_and_its_draw_is_its_seeds_own(rows):
    plan = plan_matrix(rows, Phase2Parameters(n_train=2, seeds=SEEDS), seed=0)
    for seed in SEEDS:
        cells = [run.cell for run in plan if run.seed == seed]
        assert cells[-3:] == ["baseline_all_demo", "baseline_random_demo", CONTROL]
    assert plan == plan_matrix(rows, Phase2Parameters(n_train=2, seeds=SEEDS), seed=0)
    targets = [runs_of(plan, seed)[CONTROL].targets for seed in SEEDS]
    assert len(set(targets)) == len(SEEDS), "each seed draws its own permutation"
    alone = plan_matrix(rows, Phase2Parameters(n_train=2, seeds=[SEEDS[1]]), seed=0)
    assert runs_of(alone, SEEDS[1])[CONTROL] == runs_of(plan, SEEDS[1])[CONTROL]
    other_run = plan_matrix(rows, Phase2Parameters(n_train=2, seeds=SEEDS), seed=1)
    assert runs_of(other_run, 0)[CONTROL].targets != targets[0], "the run seed draws too"


def test_fewer_than_two_labeled_snapshots_skip_the_control_with_its_reason(rows):
    [control] = [
        run
        for run in plan_matrix(rows[:1], Phase2Parameters(n_train=1, seeds=[0]), seed=0)
        if run.cell == CONTROL
    ]
    assert control.skip == "1 labeled snapshot(s): no other target to permute with"
    assert control.targets is None


def test_the_permuted_targets_are_part_of_the_runs_key(rows, instrument):
    params, lora = StudentParameters(model="tiny"), LoraParameters()
    control = runs_of(plan_matrix(rows, Phase2Parameters(n_train=2, seeds=[0]), seed=0), 0)[CONTROL]
    key = run_key(control, lora, instrument, params)
    assert key == run_key(replace(control), lora, instrument, params)
    moved = control.targets[1:] + control.targets[:1]
    assert moved != control.targets
    assert run_key(replace(control, targets=moved), lora, instrument, params) != key
    assert run_key(replace(control, targets=None), lora, instrument, params) != key


def test_the_targets_of_the_examples_come_without_rendering_and_a_wrong_count_is_refused(rows):
    for format in ("demo", "hint"):
        for steps in (1, 3):
            examples = sft_examples(rows, format, 0, steps)
            assert sft_targets(rows, format, steps) == [e.target for e in examples]
    with pytest.raises(ValueError, match=f"{len(rows) - 1} targets for {len(rows)} training"):
        sft_examples(rows, "demo", targets=[row.expert_action for row in rows[1:]])


def test_a_training_unit_trains_on_the_runs_permuted_targets(rows, monkeypatch, instrument):
    control = runs_of(plan_matrix(rows, Phase2Parameters(n_train=2, seeds=[0]), seed=0), 0)[CONTROL]
    seen = []

    def capture(self, student, examples, *args, **kwargs):
        seen.extend(examples)
        raise RuntimeError("captured")

    monkeypatch.setattr(Instrument, "train", capture)
    student = SimpleNamespace(params=SimpleNamespace(history=0))
    with pytest.raises(RuntimeError, match="captured"):
        train_adapter(student, Training(control, LoraParameters(), instrument))
    assert [e.target for e in seen] == list(control.targets)
