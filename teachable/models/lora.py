"""LoRA SFT on (prompt, target action) examples: the one training function of every phase.

Warm-up, micro-training, the training matrix and selection all call `train_lora`. It trains a
fresh PEFT LoRA adapter on a module tree that shares the student's base weights, so the student
stays usable and unchanged and hundreds of adapters can be trained in one process. The loss
covers the action tokens only. An `Anchor` adds a KL term that holds the policy at other states
to the student's own (the adapter disabled), so a training teaches its states without shifting
the whole policy.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm.auto import tqdm

from teachable.models.student import (
    Continuation,
    Prompt,
    Student,
    peft_notices_hidden,
    publish_folder,
    sharing_copy,
)
from teachable.parameters import LoraParameters
from teachable.vocabulary import ACTIONS

IGNORED = -100  # label of tokens outside the loss (prompt and padding)

ANCHOR_STREAM = 1  # mixed with `lora.seed` to seed the anchor draws apart from the batch order


@dataclass(frozen=True)
class SFTExample:
    """One supervised step: the prompt the student reads and the action it should answer."""

    prompt: Prompt
    target: str


@dataclass(frozen=True)
class Anchor:
    """States where training holds the policy to the student's own: each optimizer step draws
    `per_step` of `prompts` (without replacement) and adds `weight` x their mean
    KL(student || trained) over the actions to the loss."""

    prompts: Sequence[Prompt]
    weight: float
    per_step: int

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("an anchor needs at least one state")
        if self.weight < 0:
            raise ValueError(f"anchor weight must be >= 0, got {self.weight}")
        if self.per_step < 1:
            raise ValueError(f"anchor per_step must be >= 1, got {self.per_step}")


@dataclass
class TrainResult:
    """What `train_lora` gives back: the saved adapter (when asked), the supervision loss of
    every optimizer step, the wall time, the trained student, ready to score, and, with an
    anchor, each step's mean KL at its drawn anchor states (before that step's update)."""

    adapter_dir: Path | None
    losses: list[float]
    seconds: float
    steps: int
    student: Student | None = None
    anchor_kl: list[float] = field(default_factory=list)


def encode_example(student: Student, example: SFTExample) -> tuple[list[int], list[int]]:
    """Input ids (prompt then target action) and labels that are -100 except on the action."""
    if example.target not in ACTIONS:
        raise ValueError(
            f"SFT target {example.target!r} is not a valid action; valid: {', '.join(ACTIONS)}"
        )
    prompt_ids = student.prompt_ids(example.prompt)
    action_ids = student.action_ids(example.target)
    return prompt_ids + action_ids, [IGNORED] * len(prompt_ids) + action_ids


def _index_stream(count: int, size: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """Batches of `size` example indices drawn from successive random permutations."""
    pending: list[int] = []
    while True:
        while len(pending) < size:
            pending.extend(rng.permutation(count).tolist())
        yield pending[:size]
        pending = pending[size:]


def _state_and_target(student: Student, example: SFTExample) -> tuple[list[int], list[int]]:
    """The example's tokens after the shared prefix, split into state and target action."""
    input_ids, labels = encode_example(student, example)
    answer = len(input_ids) - sum(label != IGNORED for label in labels)
    return input_ids[len(student.prefix_ids) : answer], input_ids[answer:]


def _sft_loss(trainee: Student, batch: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """Mean cross-entropy over the target tokens of a micro-batch. The prefix is encoded once
    (with gradients) and shared by every row, as in scoring; the result equals the loss of
    full prompt + action sequences with the prompt masked out."""
    width = max(len(target) for _, target in batch)
    continuations, labels = [], []
    for _, target in batch:
        padding = width - len(target)
        continuations.append(
            Continuation(
                torch.tensor(target + [0] * padding),
                torch.arange(width),
                torch.tensor([1] * len(target) + [-1] * padding),
            )
        )
        labels.append(target + [IGNORED] * padding)
    states = [state for state, _ in batch]
    logits = trainee.continuation_logits(trainee.encode_prefix(), states, continuations)
    targets = torch.tensor(labels, device=logits.device)
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORED
    )


def action_log_policy(student: Student, states: Sequence[list[int]]) -> torch.Tensor:
    """log pi over the actions at encoded states (rows, k): the student's scoring (summed
    action-token log-probabilities, softmaxed over the actions) under the caller's grad mode."""
    return student.score_states(states, prefix=student.encode_prefix()).log_softmax(-1)


def anchor_divergence(trainee: Student, states: Sequence[list[int]]) -> torch.Tensor:
    """Mean over `states` of KL(reference || trained) over the actions, differentiable in the
    trained policy; the reference is the trainee with its adapter disabled (no second model).

    This direction is mass-covering: it charges the trained policy for every action it takes
    mass from where the reference had it, and its gradient in the trained logits, pi_trained -
    pi_reference, is a distillation toward the whole reference distribution. So it keeps the
    rest of the policy (the reference's spread over actions, not only its mode), and it pulls
    back an action that training has already driven toward 0, where the reverse KL's gradient,
    weighted by the trained probabilities, fades away.
    """
    with torch.no_grad(), trainee.model.disable_adapter():
        reference = action_log_policy(trainee, states)
    trained = action_log_policy(trainee, states)
    return torch.nn.functional.kl_div(trained, reference, reduction="batchmean", log_target=True)


def _anchor_step(
    trainee: Student, anchor: Anchor, states: list[list[int]], draws: np.random.Generator
) -> float:
    """Backpropagate the anchor term of one optimizer step; its mean KL."""
    drawn = draws.choice(len(states), min(anchor.per_step, len(states)), replace=False)
    divergence = anchor_divergence(trainee, [states[index] for index in drawn])
    (anchor.weight * divergence).backward()
    return divergence.item()


def _lora_config(lora: LoraParameters) -> LoraConfig:
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
    )


def save_adapter(model: PeftModel, folder: Path) -> None:
    """The adapter in PEFT's layout, byte for byte the same in every process: PEFT writes
    `target_modules` from a set, in an order that changes with the process's hash seed."""
    model.save_pretrained(folder)
    config_file = Path(folder) / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))


def fresh_adapter(student: Student, lora: LoraParameters) -> PeftModel:
    """A new LoRA adapter over a copy of the student's base weights."""
    with peft_notices_hidden():
        return get_peft_model(sharing_copy(student.base_model), _lora_config(lora))


def train_lora(
    student: Student,
    examples: Sequence[SFTExample],
    lora: LoraParameters,
    output_dir: Path | None = None,
    progress: bool = False,
    anchor: Anchor | None = None,
) -> TrainResult:
    """Train a fresh LoRA adapter on `examples` over the student's base weights.

    `lora.steps` AdamW steps, each over `lora.gradient_accumulation_steps` micro-batches of
    `lora.batch_size` examples, seeded by `lora.seed`. With an `anchor`, each step also draws
    its anchor states (from a stream of its own, so the batch order is the same as without)
    and adds the anchor term (`anchor_divergence`). The adapter is saved in the PEFT layout to
    `output_dir` when given; `student` itself is left as it was.
    """
    if not examples:
        raise ValueError("train_lora needs at least one SFT example")
    encoded = [_state_and_target(student, example) for example in examples]
    anchor_states = [] if anchor is None else [student.state_ids(p) for p in anchor.prompts]
    anchor_draws = np.random.default_rng([lora.seed, ANCHOR_STREAM])
    device = student.device
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(lora.seed)
        model = fresh_adapter(student, lora)
        trainee = Student(model, student.tokenizer, student.params, student.base_model)
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=lora.learning_rate)
        batches = _index_stream(len(encoded), lora.batch_size, np.random.default_rng(lora.seed))
        model.train()
        losses, anchor_kl = [], []
        for _ in tqdm(range(lora.steps), desc="LoRA SFT", leave=False, disable=not progress):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for _ in range(lora.gradient_accumulation_steps):
                batch = [encoded[index] for index in next(batches)]
                loss = _sft_loss(trainee, batch) / lora.gradient_accumulation_steps
                loss.backward()
                step_loss += loss.item()
            if anchor is not None:
                anchor_kl.append(_anchor_step(trainee, anchor, anchor_states, anchor_draws))
            optimizer.step()
            losses.append(step_loss)
    model.eval()
    adapter_dir = None
    if output_dir is not None:
        adapter_dir = publish_folder(Path(output_dir), partial(save_adapter, model), replace=True)
    trained = Student(model, student.tokenizer, student.params, student.base_model, adapter_dir)
    seconds = time.perf_counter() - started
    return TrainResult(adapter_dir, losses, seconds, lora.steps, trained, anchor_kl)


def merge_adapter(student_with_adapter: Student, output_dir: Path) -> Path:
    """Fold the student's LoRA adapter into a copy of its base weights and save a plain
    Hugging Face checkpoint (weights and tokenizer) that loads as `student.model_path`."""
    if not isinstance(student_with_adapter.model, PeftModel):
        raise ValueError("merge_adapter needs a student with a LoRA adapter on top")
    merged = copy.deepcopy(student_with_adapter.model).merge_and_unload()

    def save(folder: Path) -> None:
        merged.save_pretrained(folder)
        student_with_adapter.tokenizer.save_pretrained(folder)

    return publish_folder(Path(output_dir), save, replace=True)
