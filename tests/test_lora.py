"""LoRA SFT core: loss mask, learning the target, adapter round trip, untouched base, merging;
the anchor: the differentiable policy is the student's scoring, a heavy anchor holds the anchor
states, and a weightless one leaves the training exactly as it is without one."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from peft import get_peft_model_state_dict

from teachable.models.lora import (
    IGNORED,
    Anchor,
    SFTExample,
    action_log_policy,
    encode_example,
    merge_adapter,
    train_lora,
)
from teachable.models.student import Prompt, Student
from teachable.parameters import LoraParameters, StudentParameters
from teachable.vocabulary import ACTIONS

PROMPT = Prompt(
    "go to the red ball",
    "You see a wall 2 steps forward. You see a red ball 1 step left and 2 steps forward.",
)
OTHER = Prompt("pick up the blue key", "You see a blue key 3 steps forward.", patch="Hint: go on.")
LORA = LoraParameters(r=8, alpha=16, learning_rate=1e-2, steps=20, batch_size=2, seed=3)
COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
ANCHOR_PROMPTS = tuple(
    Prompt(f"go to the {color} box", f"You see a {color} box {steps} steps forward.")
    for steps, color in enumerate(COLORS, 1)
)
PUSHED = [  # one action at every trained state: training moves the whole policy toward it
    SFTExample(
        Prompt(f"go to the {color} key", f"You see a {color} key {steps} steps left."), "toggle"
    )
    for steps, color in enumerate(COLORS[:3], 1)
]


@pytest.fixture(scope="module")
def untrained(student) -> np.ndarray:
    return student.action_logprobs([PROMPT, OTHER])


@pytest.fixture(scope="module")
def target(untrained) -> str:
    """An action the untrained student does not prefer: its least likely one."""
    return ACTIONS[int(np.argmin(untrained[0]))]


@pytest.fixture(scope="module")
def trained(student, untrained, target, tmp_path_factory):
    output = tmp_path_factory.mktemp("lora") / "adapter"
    return train_lora(student, [SFTExample(PROMPT, target)], LORA, output_dir=output)


def test_loss_mask_covers_only_the_action_tokens(student):
    input_ids, labels = encode_example(student, SFTExample(OTHER, "pick up"))
    prompt_ids, action_ids = student.prompt_ids(OTHER), student.action_ids("pick up")
    assert input_ids == prompt_ids + action_ids
    assert len(labels) == len(input_ids)
    assert labels[: len(prompt_ids)] == [IGNORED] * len(prompt_ids)
    assert labels[len(prompt_ids) :] == action_ids


def test_first_loss_is_the_masked_full_sequence_loss(student):
    """A fresh adapter starts as the identity, so step one's loss must equal the plain
    cross-entropy of whole prompt + action sequences with the prompt masked out."""
    examples = [SFTExample(PROMPT, "toggle"), SFTExample(OTHER, "go forward")]
    result = train_lora(student, examples, LORA.model_copy(update={"steps": 1}))
    encoded = [encode_example(student, example) for example in examples]
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.zeros((2, width), dtype=torch.long)
    labels = torch.full((2, width), IGNORED)
    attention_mask = torch.zeros((2, width), dtype=torch.long)
    for row, (ids, row_labels) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(row_labels)
        attention_mask[row, : len(ids)] = 1
    with torch.no_grad():
        expected = student.model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels
        ).loss
    assert result.losses[0] == pytest.approx(expected.item(), abs=1e-4)


def test_unknown_target_is_rejected_before_training(student):
    with pytest.raises(ValueError, match="'jump'"):
        train_lora(student, [SFTExample(PROMPT, "jump")], LORA)
    with pytest.raises(ValueError, match="at least one"):
        train_lora(student, [], LORA)


def test_sft_lowers_the_loss_and_teaches_the_target(trained, untrained, target):
    assert np.argmax(untrained[0]) != ACTIONS.index(target)
    assert trained.steps == LORA.steps == len(trained.losses)
    assert np.mean(trained.losses[-3:]) < 0.5 * np.mean(trained.losses[:3])
    probs = trained.student.action_probabilities([PROMPT])[0]
    assert np.argmax(probs) == ACTIONS.index(target)


def test_base_student_is_unchanged_and_shares_weights(student, untrained, trained):
    np.testing.assert_allclose(student.action_logprobs([PROMPT, OTHER]), untrained, atol=1e-6)
    base_weight = student.base_model.get_input_embeddings().weight
    adapted_weight = trained.student.model.get_input_embeddings().weight
    assert adapted_weight.data_ptr() == base_weight.data_ptr()
    assert not any("lora" in name for name, _ in student.base_model.named_parameters())


def test_adapter_round_trips_through_save_and_load(student, trained):
    assert (trained.adapter_dir / "adapter_config.json").is_file()
    assert (trained.adapter_dir / "adapter_model.safetensors").is_file()
    expected = trained.student.action_probabilities([PROMPT, OTHER])
    reloaded = Student.load(student.params, adapter=trained.adapter_dir)
    np.testing.assert_allclose(reloaded.action_probabilities([PROMPT, OTHER]), expected, atol=1e-5)
    shared = student.with_adapter(trained.adapter_dir)
    np.testing.assert_allclose(shared.action_probabilities([PROMPT, OTHER]), expected, atol=1e-5)


@pytest.mark.slow
def test_training_is_seeded_and_accumulates(student, target, trained):
    again = train_lora(student, [SFTExample(PROMPT, target)], LORA)
    np.testing.assert_allclose(again.losses, trained.losses, rtol=1e-5)
    assert again.adapter_dir is None
    accumulated = LORA.model_copy(update={"steps": 3, "gradient_accumulation_steps": 2})
    result = train_lora(
        student, [SFTExample(PROMPT, target), SFTExample(OTHER, "toggle")], accumulated
    )
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))


def test_the_trained_policy_is_the_students_scoring_with_gradients(student, trained):
    states = [student.state_ids(prompt) for prompt in ANCHOR_PROMPTS]
    for scorer in (student, trained.student):
        log_policy = action_log_policy(scorer, states)
        expected = np.log(scorer.action_probabilities(ANCHOR_PROMPTS))
        np.testing.assert_allclose(log_policy.detach().numpy(), expected, atol=1e-5)
    assert log_policy.requires_grad
    with torch.no_grad(), trained.student.model.disable_adapter():
        reference = action_log_policy(trained.student, states).numpy()
    np.testing.assert_allclose(
        reference, np.log(student.action_probabilities(ANCHOR_PROMPTS)), atol=1e-5
    )


def kl_per_state(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """KL(before || after) over the actions at each state, from the two policies."""
    return (before * (np.log(before) - np.log(after))).sum(axis=1)


def test_a_heavy_anchor_holds_the_anchor_states_where_none_lets_them_move(student):
    lora = LORA.model_copy(update={"steps": 10, "batch_size": 3})
    warmed = student.action_probabilities(ANCHOR_PROMPTS)
    runs = {
        weight: train_lora(student, PUSHED, lora, anchor=Anchor(ANCHOR_PROMPTS, weight, 6))
        for weight in (0.0, 1e3)
    }
    free, held = (
        kl_per_state(warmed, runs[weight].student.action_probabilities(ANCHOR_PROMPTS))
        for weight in (0.0, 1e3)
    )
    assert held.max() < 0.01
    assert free.mean() > 1.0 and free.mean() > 100 * held.mean()
    for run in runs.values():
        assert len(run.anchor_kl) == lora.steps and run.anchor_kl[0] < 1e-6
    assert runs[1e3].losses[-1] < runs[1e3].losses[0]
    assert runs[0.0].anchor_kl[-1] > 100 * runs[1e3].anchor_kl[-1]


def adapter_weights(result) -> dict[str, torch.Tensor]:
    return get_peft_model_state_dict(result.student.model)


def test_a_weightless_anchor_leaves_the_training_exactly_as_without_one(student):
    """No anchor and a weight-0 anchor draw the same batches and take the same steps, bit for
    bit; the anchor states are drawn from their own seeded stream."""
    lora = LORA.model_copy(update={"steps": 4})
    plain = train_lora(student, PUSHED, lora)
    runs = [
        train_lora(student, PUSHED, lora),
        train_lora(student, PUSHED, lora, anchor=Anchor(ANCHOR_PROMPTS, 0.0, 2)),
    ]
    for run in runs:
        assert run.losses == plain.losses
        weights = adapter_weights(run)
        assert weights.keys() == adapter_weights(plain).keys()
        assert all(torch.equal(weights[name], adapter_weights(plain)[name]) for name in weights)
    assert plain.anchor_kl == [] and len(runs[1].anchor_kl) == lora.steps
    again = train_lora(student, PUSHED, lora, anchor=Anchor(ANCHOR_PROMPTS, 0.0, 2))
    assert again.anchor_kl == runs[1].anchor_kl and runs[1].anchor_kl[-1] > 0


def test_anchor_settings_are_checked():
    with pytest.raises(ValueError, match="at least one"):
        Anchor((), 1.0, 1)
    with pytest.raises(ValueError, match="weight"):
        Anchor(ANCHOR_PROMPTS, -1.0, 1)
    with pytest.raises(ValueError, match="per_step"):
        Anchor(ANCHOR_PROMPTS, 1.0, 0)


def test_merged_checkpoint_scores_like_the_adapter(trained, tmp_path):
    folder = merge_adapter(trained.student, tmp_path / "merged")
    merged = Student.load(StudentParameters(model_path=str(folder), batch_size=4))
    expected = trained.student.action_logprobs([PROMPT, OTHER])
    np.testing.assert_allclose(merged.action_logprobs([PROMPT, OTHER]), expected, atol=1e-4)
    with pytest.raises(ValueError, match="adapter"):
        merge_adapter(merged, tmp_path / "again")


def hash_seeds_that_order_a_set_differently(names: set[str]) -> tuple[str, str]:
    """Two values of PYTHONHASHSEED under which `list(names)` comes out in different orders."""
    seen: dict[str, str] = {}
    for hash_seed in map(str, range(64)):
        order = subprocess.run(
            [sys.executable, "-c", f"print(list({names!r}))"],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        seen.setdefault(order, hash_seed)
        if len(seen) == 2:
            return tuple(seen.values())
    raise AssertionError(f"no two hash seeds order {names} differently")


@pytest.mark.slow
def test_the_saved_adapter_is_the_same_bytes_in_every_process(tmp_path):
    """Processes with different hash seeds (as Ray workers have) write identical adapters."""
    script = """
import sys
import warnings
from pathlib import Path
from teachable.models.lora import SFTExample, train_lora
from teachable.models.student import Prompt, Student
from teachable.parameters import LoraParameters, StudentParameters

student = Student.load(StudentParameters(model="tiny", batch_size=4))
lora = LoraParameters(r=4, steps=2, batch_size=1, seed=3, target_modules=["v_proj", "q_proj"])
example = SFTExample(Prompt("go to the red ball", "You see a red ball."), "turn left")
train_lora(student, [example], lora, output_dir=Path(sys.argv[1]))
"""
    folders = []
    for hash_seed in hash_seeds_that_order_a_set_differently({"v_proj", "q_proj"}):
        folder = tmp_path / f"hash{hash_seed}"
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(folder)], env=environment, check=True)
        folders.append({p.name: p.read_bytes() for p in folder.iterdir()})
    assert set(folders[0]) >= {"adapter_config.json", "adapter_model.safetensors"}
    assert folders[0] == folders[1]
    assert json.loads(folders[0]["adapter_config.json"])["target_modules"] == ["q_proj", "v_proj"]


def test_adapters_show_no_library_deprecation_notice(student, tmp_path):
    """PEFT's use of a name transformers deprecated is not the reader's concern: training an
    adapter and loading it raise no FutureWarning into the reports."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one_step = LORA.model_copy(update={"steps": 1})
        train_lora(student, [SFTExample(PROMPT, "go forward")], one_step, output_dir=tmp_path)
        student.with_adapter(tmp_path)
    assert [w for w in caught if issubclass(w.category, FutureWarning)] == []
