"""Supervision formats as SFT examples: their texts, their targets and their loss masks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from labeled_rows import labeled_rows

from teachable.models.lora import IGNORED, encode_example
from teachable.models.supervision import (
    SUPERVISION_FORMATS,
    SupervisionFormat,
    patch_text,
    sft_example,
    sft_examples,
    suggestion,
    teacher_texts,
)
from teachable.models.training_runs import MatrixRun, run_key
from teachable.parameters import LoraParameters, StudentParameters
from teachable.vocabulary import FORMATS
from teachable.world.text_world import TextWorld, expert_trajectory

TASKS = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10)] + [("PickupLoc", 2), ("PickupLoc", 3)]


@pytest.fixture(scope="module")
def rows(student):
    """Three snapshots of each of eight tasks."""
    return labeled_rows(student, TASKS, per_task=3)


def test_each_format_renders_its_own_text_and_targets_the_expert_action(student, rows):
    row = rows[1]
    texts = {f: student.user_text(sft_example(row, f).prompt) for f in FORMATS}
    answer = row.teacher
    assert answer.diagnosis and answer.contrast and answer.diagnosis != answer.contrast
    assert answer.diagnosis in texts["hint"] and answer.hint in texts["hint"]
    assert answer.contrast in texts["contrast"] and answer.diagnosis not in texts["contrast"]
    assert answer.diagnosis not in texts["demo"] and answer.contrast not in texts["demo"]
    assert sft_example(row, "demo").prompt.patch is None
    for format in FORMATS:
        example = sft_example(row, format)
        assert example.target == row.expert_action
        assert (example.prompt.mission, example.prompt.observation) == (
            row.mission,
            row.observation,
        )
        assert texts[format].startswith(f"Goal: {row.mission}\n{row.observation}")


def test_loss_mask_covers_only_the_action_tokens_in_every_format(student, rows):
    row = rows[1]
    for format in FORMATS:
        example = sft_example(row, format)
        input_ids, labels = encode_example(student, example)
        prompt_ids = student.prompt_ids(example.prompt)
        action_ids = student.action_ids(row.expert_action)
        assert input_ids == prompt_ids + action_ids
        assert labels == [IGNORED] * len(prompt_ids) + action_ids
    hint_prompt = student.prompt_ids(sft_example(row, "hint").prompt)
    assert len(hint_prompt) > len(student.prompt_ids(sft_example(row, "demo").prompt))


def test_a_format_without_its_text_or_an_unknown_format_is_refused(rows):
    bare = rows[0].model_copy(update={"teacher": None})
    assert sft_example(bare, "demo").target == bare.expert_action
    with pytest.raises(ValueError, match=f"snapshot {bare.id}: the hint format needs"):
        sft_example(bare, "hint")
    with pytest.raises(ValueError, match="unknown supervision format 'dpo'"):
        sft_example(rows[0], "dpo")


def test_every_format_of_the_vocabulary_is_registered_with_the_fields_it_reads(rows):
    assert list(SUPERVISION_FORMATS) == list(FORMATS)
    reads = {name: f.reads for name, f in SUPERVISION_FORMATS.items()}
    assert reads == {
        "demo": ("suggested_action",),
        "hint": ("diagnosis", "hint"),
        "contrast": ("contrast",),
    }
    answer = rows[1].teacher
    assert patch_text("demo", answer) == suggestion(answer.suggested_action)
    assert patch_text("demo", answer) == f"A teacher suggests: {answer.suggested_action}."
    assert patch_text("hint", answer) == f"A teacher's hint: {answer.diagnosis} {answer.hint}"
    assert patch_text("contrast", answer) == f"A teacher explains: {answer.contrast}"
    assert list(teacher_texts(answer)) == ["diagnosis", "hint", "contrast"]


def test_a_newly_registered_format_is_picked_up_by_training_and_patching(rows, monkeypatch):
    critique = SupervisionFormat("critique", "A teacher objects: {contrast}")
    monkeypatch.setitem(SUPERVISION_FORMATS, critique.name, critique)
    row = rows[1]
    expected = f"A teacher objects: {row.teacher.contrast}"
    assert sft_example(row, "critique").prompt.patch == expected
    assert patch_text("critique", row.teacher) == expected
    assert sft_example(row, "critique").target == row.expert_action


def test_demo_steps_follow_the_experts_recovery_trajectory_state_by_state(rows):
    row = next(r for r in rows if len(expert_trajectory(r.state, 3)[0]) == 3)
    actions, _ = expert_trajectory(row.state, 3)
    examples = sft_examples([row], "demo", demo_steps=3)
    assert [e.target for e in examples] == actions
    assert examples[0] == sft_example(row, "demo")
    state = row.state
    for example, action in zip(examples, actions, strict=True):
        world = TextWorld.restore(state)
        assert (example.prompt.mission, example.prompt.observation) == (
            world.mission,
            world.observation,
        )
        state = state.then(action)
    assert len({e.prompt.observation for e in examples}) > 1


def test_demo_steps_leave_the_formats_that_speak_of_the_snapshot_alone(rows):
    for format in ("hint", "contrast"):
        assert sft_examples(rows[:4], format, demo_steps=3) == sft_examples(rows[:4], format)
    assert sft_examples(rows[:4], "demo", demo_steps=1) == [
        sft_example(r, "demo") for r in rows[:4]
    ]


def test_a_recovery_trajectory_is_a_new_run_and_one_step_is_the_old_one(rows, instrument):
    params = StudentParameters(model="tiny")
    lora = LoraParameters()
    run = MatrixRun("baseline_all_demo", 0, "all", "demo", tuple(rows[:3]))
    assert run_key(run, lora, instrument, params) == run_key(
        replace(run, demo_steps=1), lora, instrument, params
    )
    assert run_key(run, lora, instrument, params) != run_key(
        replace(run, demo_steps=2), lora, instrument, params
    )
