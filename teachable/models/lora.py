"""LoRA SFT on (prompt, target action) examples: the one training function of every phase.

Warm-up, micro-training, the training matrix and selection all call `train_lora`. It trains a
fresh PEFT LoRA adapter on a module tree that shares the student's base weights, so the student
stays usable and unchanged and hundreds of adapters can be trained in one process. The loss
covers the action tokens only.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm.auto import tqdm

from teachable.models.student import Continuation, Prompt, Student, publish_folder, sharing_copy
from teachable.parameters import LoraParameters
from teachable.vocabulary import ACTIONS

IGNORED = -100  # label of tokens outside the loss (prompt and padding)


@dataclass(frozen=True)
class SFTExample:
    """One supervised step: the prompt the student reads and the action it should answer."""

    prompt: Prompt
    target: str


@dataclass
class TrainResult:
    """What `train_lora` gives back: the saved adapter (when asked), the loss of every
    optimizer step, the wall time, and the trained student, ready to score."""

    adapter_dir: Path | None
    losses: list[float]
    seconds: float
    steps: int
    student: Student | None = None


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


def train_lora(
    student: Student,
    examples: Sequence[SFTExample],
    lora: LoraParameters,
    output_dir: Path | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train a fresh LoRA adapter on `examples` over the student's base weights.

    `lora.steps` AdamW steps, each over `lora.gradient_accumulation_steps` micro-batches of
    `lora.batch_size` examples, seeded by `lora.seed`. The adapter is saved in the PEFT layout
    to `output_dir` when given; `student` itself is left as it was.
    """
    if not examples:
        raise ValueError("train_lora needs at least one SFT example")
    encoded = [_state_and_target(student, example) for example in examples]
    device = student.device
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(lora.seed)
        model = get_peft_model(sharing_copy(student.base_model), _lora_config(lora))
        trainee = Student(model, student.tokenizer, student.params, student.base_model)
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=lora.learning_rate)
        batches = _index_stream(len(encoded), lora.batch_size, np.random.default_rng(lora.seed))
        model.train()
        losses = []
        for _ in tqdm(range(lora.steps), desc="LoRA SFT", leave=False, disable=not progress):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for _ in range(lora.gradient_accumulation_steps):
                batch = [encoded[index] for index in next(batches)]
                loss = _sft_loss(trainee, batch) / lora.gradient_accumulation_steps
                loss.backward()
                step_loss += loss.item()
            optimizer.step()
            losses.append(step_loss)
    model.eval()
    adapter_dir = None
    if output_dir is not None:
        adapter_dir = publish_folder(Path(output_dir), partial(save_adapter, model), replace=True)
    trained = Student(model, student.tokenizer, student.params, student.base_model, adapter_dir)
    return TrainResult(adapter_dir, losses, time.perf_counter() - started, lora.steps, trained)


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
