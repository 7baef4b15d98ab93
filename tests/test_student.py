"""The student: prompts, exact batched/cached action scoring, the policy, checkpoint caches."""

import json
import time

import numpy as np
import pytest
import torch

from teachable.models.rollouts import sample_actions
from teachable.models.student import (
    SYSTEM_TEXT,
    Prompt,
    Student,
    default_checkpoint,
    float32_weight,
    normalized_entropy,
    softmax_policy,
    tiny_checkpoint,
)
from teachable.parameters import StudentParameters
from teachable.vocabulary import ACTIONS

TINY = StudentParameters(model="tiny", batch_size=3)
BF16_TOLERANCE = 0.01  # largest |p_bfloat16 - p_float32| of an action probability
PROMPTS = [
    Prompt(
        "go to the red ball",
        "You see a wall 2 steps forward. You see a red ball 1 step left and 2 steps forward.",
    ),
    Prompt("pick up the blue key", "You see a blue key 3 steps forward."),
    Prompt(
        "open the yellow door",
        "You see a wall 1 step right. You see a closed yellow door 2 steps left.",
        patch="A teacher suggests: turn left.",
    ),
    Prompt("go to a box", "You see nothing nearby.", previous_actions=("turn left", "go forward")),
    Prompt(
        "put the green ball next to the purple key",
        "You carry a green ball. You see a wall 4 steps forward. You see a purple key "
        "1 step right and 3 steps forward. You see a grey box 2 steps left and 1 step forward.",
        patch="Hint: the purple key is ahead on your right.",
        previous_actions=("pick up",),
    ),
]


@pytest.fixture(scope="module")
def student(student: Student) -> Student:
    """The shared tiny student scoring 3 states per pass: fewer than PROMPTS hold."""
    return Student(student.model, student.tokenizer, TINY)


def test_prompt_ids_are_the_chat_template_with_the_action_as_answer(student):
    prompt, action = PROMPTS[2], "turn left"
    messages = [
        {"role": "system", "content": SYSTEM_TEXT},
        {"role": "user", "content": student.user_text(prompt)},
        {"role": "assistant", "content": action},
    ]
    text = student.tokenizer.apply_chat_template(messages, tokenize=False)
    expected = student.tokenizer.encode(text, add_special_tokens=False)
    seen = student.prompt_ids(prompt) + student.action_ids(action)
    assert expected[: len(seen)] == seen
    assert student.tokenizer.decode(student.prompt_ids(prompt)).endswith("<|im_start|>assistant\n")
    assert "A teacher suggests: turn left." in student.user_text(prompt)
    assert "Previous actions: turn left, go forward." in student.user_text(PROMPTS[3])


def test_prompts_stay_short(student):
    lengths = [len(student.prompt_ids(prompt)) for prompt in PROMPTS[:2]]
    assert max(lengths) < 90


def test_batched_cached_scoring_equals_naive(student):
    assert student.params.batch_size < len(PROMPTS)
    assert len({len(student.state_ids(prompt)) for prompt in PROMPTS}) == len(PROMPTS)
    assert len({len(student.action_ids(action)) for action in ACTIONS}) > 1
    batched = student.action_logprobs(PROMPTS)
    naive = student.action_logprobs_naive(PROMPTS)
    assert batched.shape == (len(PROMPTS), len(ACTIONS))
    np.testing.assert_allclose(batched, naive, atol=1e-4, rtol=0)
    assert np.ptp(naive, axis=0).max() > 1e-2  # the prompts really score differently


def test_scoring_any_candidate_list(student):
    actions = ("toggle", "go forward", "drop")
    batched = student.action_logprobs(PROMPTS[:2], actions)
    np.testing.assert_allclose(
        batched, student.action_logprobs_naive(PROMPTS[:2], actions), atol=1e-4
    )
    np.testing.assert_allclose(
        batched, student.action_logprobs(PROMPTS[:2])[:, [5, 2, 4]], atol=1e-5
    )


def test_bfloat16_weights_score_through_a_float32_head_close_to_float32(student):
    half = Student.load(TINY.model_copy(update={"dtype": "bfloat16"}))
    assert half.base_model.dtype == torch.bfloat16
    hidden = torch.ones(3, half.base_model.config.hidden_size, dtype=torch.bfloat16)
    head = half.model.get_output_embeddings()
    assert half.project(hidden).dtype == torch.float32
    assert float32_weight(head.weight) is float32_weight(head.weight), "one copy, shared"
    assert torch.equal(float32_weight(head.weight), head.weight.detach().float())
    coarse = Student(half.model, half.tokenizer, half.params, float32_head=False)
    assert coarse.project(hidden).dtype == torch.bfloat16
    assert student.project(hidden.float()).dtype == torch.float32  # float32 weights: as is

    # at temperature 5 the tiny student's policy is spread (at 1 it is nearly one-hot)
    reference = student.action_probabilities(PROMPTS, temperature=5.0)
    assert reference.max() < 0.95
    difference = np.abs(half.action_probabilities(PROMPTS, temperature=5.0) - reference).max()
    assert difference <= BF16_TOLERANCE


def test_probabilities_sum_to_one_and_temperature_zero_is_argmax(student):
    probs = student.action_probabilities(PROMPTS, temperature=1.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (probs > 0).all()
    greedy = student.action_probabilities(PROMPTS, temperature=0.0)
    assert set(np.unique(greedy)) == {0.0, 1.0}
    np.testing.assert_array_equal(greedy.argmax(axis=1), probs.argmax(axis=1))
    hot = student.action_probabilities(PROMPTS, temperature=100.0)
    assert (normalized_entropy(hot) > normalized_entropy(probs)).all()


def test_softmax_policy_rejects_negative_temperature():
    with pytest.raises(ValueError, match="temperature"):
        softmax_policy(np.zeros((1, 6)), temperature=-1.0)


def test_normalized_entropy_bounds():
    one_hot = np.eye(6)[[0, 3]]
    np.testing.assert_allclose(normalized_entropy(one_hot), 0.0, atol=1e-12)
    np.testing.assert_allclose(normalized_entropy(np.full((2, 6), 1 / 6)), 1.0, atol=1e-12)
    middle = normalized_entropy(np.array([[0.5, 0.5, 0, 0, 0, 0]]))
    np.testing.assert_allclose(middle, np.log(2) / np.log(6))


def test_sample_actions_greedy_and_sampled():
    probs = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    logprobs = np.log(probs)
    rngs = [np.random.default_rng(0), np.random.default_rng(1)]
    assert sample_actions(logprobs, 0.0, [0.05, 0.99]) == [1, 0]
    picks = np.array(
        [sample_actions(logprobs, 1.0, [rng.random() for rng in rngs]) for _ in range(4000)]
    )
    for row in range(2):
        frequencies = np.bincount(picks[:, row], minlength=3) / len(picks)
        np.testing.assert_allclose(frequencies, probs[row], atol=0.03)
    assert sample_actions(logprobs, 1.0, [0.65, 0.65]) == [1, 0]  # first cumulative p > 0.65


def test_tiny_checkpoint_is_built_once():
    folder = tiny_checkpoint(TINY.tiny_seed)
    weights = folder / "model.safetensors"
    built = weights.stat().st_mtime_ns
    started = time.perf_counter()
    assert tiny_checkpoint(TINY.tiny_seed) == folder
    assert time.perf_counter() - started < 0.5
    assert weights.stat().st_mtime_ns == built
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2


def test_bad_student_parameters_name_the_field(tmp_path, student):
    with pytest.raises(ValueError, match="student.model"):
        Student.load(StudentParameters(model="not-a-model"))
    with pytest.raises(FileNotFoundError, match="student.model_path"):
        Student.load(StudentParameters(model_path=str(tmp_path / "missing")))
    with pytest.raises(FileNotFoundError, match="student.adapter"):
        student.with_adapter(tmp_path)


def test_embedded_default_converts_loads_and_scores():
    folder = default_checkpoint()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    student = Student.load(StudentParameters(model="default", batch_size=2))
    assert student.base_model.config.num_hidden_layers == 30
    assert "<|im_start|>" in student.tokenizer.chat_template
    prompt_length = len(student.prompt_ids(PROMPTS[0]))
    assert prompt_length < 90
    probs = student.action_probabilities(PROMPTS[:1])
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-9)
    assert 0.0 < normalized_entropy(probs)[0] < 1.0
