"""Student preparation: behaviour cloning of the bot turns the raw default into a partial expert.

The raw 135M default acts almost at random in BabyAI, which would make every state equally
uncertain. The warm-up trains a LoRA adapter on bot trajectories from tasks that no later
phase uses, merges it, and caches the merged checkpoint keyed by everything that shapes it.
It also measures, before and after, how far a teacher's suggestion in the prompt moves the
student toward the expert's action: the contextual patch test of Phase 1 depends on that.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from teachable.models.lora import SFTExample, merge_adapter, train_lora
from teachable.models.rollouts import EpisodeSpec, prompt_for, run_episodes, success_rate
from teachable.models.student import Prompt, Student, cache_root
from teachable.models.supervision import PLACEBO, suggestion
from teachable.parameters import (
    LoraParameters,
    Phase0Parameters,
    StudentParameters,
    WarmupParameters,
)
from teachable.records.env_state import EnvState
from teachable.records.layout import Phase0Layout, PreparedStudentLayout
from teachable.records.store import read_json, write_json
from teachable.vocabulary import ACTIONS
from teachable.world.tasks import task_suite
from teachable.world.text_world import TextWorld, expert_decisions

SHIFT_STATES = 64


def _prompts(pairs: list[tuple[EnvState, str]], history: int) -> list[Prompt]:
    return [prompt_for(TextWorld.restore(state), history) for state, _ in pairs]


def examples_from(
    pairs: list[tuple[EnvState, str]], history: int, patched_fraction: float, seed: int
) -> list[SFTExample]:
    """Behaviour-cloning examples; a `patched_fraction` of them carry the teacher's suggestion
    in the prompt, so the student keeps taking in-context supervision."""
    rng = np.random.default_rng(seed)
    examples = []
    for prompt, (_, action) in zip(_prompts(pairs, history), pairs, strict=True):
        if rng.random() < patched_fraction:
            prompt = Prompt(
                prompt.mission, prompt.observation, suggestion(action), prompt.previous_actions
            )
        examples.append(SFTExample(prompt, action))
    return examples


def in_context_shift(
    student: Student, pairs: list[tuple[EnvState, str]], history: int
) -> dict[str, float]:
    """Mean probability of the expert's action without a patch, with the teacher's suggestion,
    and with a neutral placebo line; the shifts are the differences to no patch."""
    prompts = _prompts(pairs, history)
    expert = np.array([ACTIONS.index(action) for _, action in pairs])
    rows = np.arange(len(pairs))

    def p_expert(patches: list[str | None]) -> float:
        patched = [
            Prompt(p.mission, p.observation, patch, p.previous_actions)
            for p, patch in zip(prompts, patches, strict=True)
        ]
        probs = student.action_probabilities(patched)
        return float(probs[rows, expert].mean())

    base = p_expert([None] * len(pairs))
    suggested = p_expert([suggestion(action) for _, action in pairs])
    placebo = p_expert([PLACEBO] * len(pairs))
    return {
        "p_expert": round(base, 4),
        "p_expert_suggested": round(suggested, 4),
        "p_expert_placebo": round(placebo, 4),
        "suggestion_shift": round(suggested - base, 4),
        "placebo_shift": round(placebo - base, 4),
        "n_states": len(pairs),
    }


def warmup_key(
    student: StudentParameters,
    warmup: WarmupParameters,
    lora: LoraParameters,
    levels: Sequence[str],
    seed: int,
) -> str:
    """Everything that shapes the warm-up student, hashed: a change means a new student."""
    shaping = {
        "model": student.model,
        "tiny_seed": student.tiny_seed,
        "history": student.history,
        "levels": list(levels),
        "seed": seed,
        "warmup": warmup.model_dump(exclude_none=True),
        "lora": lora.model_dump(include={"r", "alpha", "dropout", "target_modules"}),
    }
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:12]


def evaluate(
    student: Student,
    tasks: list[EnvState],
    seed: int,
    max_steps: int,
    temperatures: dict[str, float],
) -> dict[str, float]:
    """Success rate on `tasks` at each named temperature (0 is greedy)."""
    specs = [EpisodeSpec(task, seed=(seed, i)) for i, task in enumerate(tasks)]
    history = student.params.history
    return {
        name: round(success_rate(run_episodes(student, specs, max_steps, temperature, history)), 4)
        for name, temperature in temperatures.items()
    }


def prepare_student(
    phase0: Phase0Parameters,
    student: StudentParameters,
    lora: LoraParameters,
    levels: Sequence[str],
    seed: int,
    progress: bool = True,
) -> tuple[StudentParameters, dict]:
    """The student later phases use, and the warm-up's report.

    A user-supplied `student.model_path` is taken as is; otherwise the warm-up runs once per
    `warmup_key` (bot trajectories on warm-up tasks of `levels`, LoRA with the shared `lora`
    shape) and its merged checkpoint is cached.
    """
    if student.model_path:
        return student, {"skipped": "student.model_path is set"}
    if not phase0.warmup.enabled:
        return student, {"skipped": "phase0.warmup.enabled is false"}
    folder = cache_root() / "students" / warmup_key(student, phase0.warmup, lora, levels, seed)
    report_path = PreparedStudentLayout(folder).report
    if report_path.is_file():
        report = {**read_json(report_path), "cached": True}
    else:
        warmed = _warm_up(phase0, student, lora, levels, seed, folder, progress)
        report = {**warmed, "cached": False}
    return student.model_copy(update={"model_path": str(folder)}), report


def save_preparation(out: Phase0Layout, student: StudentParameters, report: dict) -> None:
    """Record the prepared student in Phase 0's `warmup.json`, where later phases find it."""
    write_json(out.warmup, {"student": student.model_dump(), **report})


def prepared_student(phase0: Phase0Layout) -> StudentParameters:
    """The student Phase 0 prepared for this run."""
    path = phase0.warmup
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run phase 0 first")
    return StudentParameters.model_validate(read_json(path)["student"])


def load_prepared_student(phase0: Phase0Layout) -> Student:
    """The student Phase 0 prepared for this run, loaded: every later phase starts from it."""
    return Student.load(prepared_student(phase0))


def _warm_up(
    phase0: Phase0Parameters,
    student_params: StudentParameters,
    shape: LoraParameters,
    levels: Sequence[str],
    seed: int,
    folder: Path,
    progress: bool,
) -> dict:
    warmup, history = phase0.warmup, student_params.history
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    train_tasks = task_suite("warmup", warmup.n_tasks, levels, seed).tasks
    eval_tasks = task_suite("warmup_eval", warmup.eval_tasks, levels, seed).tasks
    pairs = expert_decisions(train_tasks)
    eval_pairs = expert_decisions(eval_tasks)
    probe = [
        eval_pairs[i]
        for i in np.random.default_rng(seed).permutation(len(eval_pairs))[:SHIFT_STATES]
    ]

    base = Student.load(student_params)
    greedy = {"greedy": 0.0}
    before = {
        "shift": in_context_shift(base, probe, history),
        "success": evaluate(base, eval_tasks, seed, warmup.max_steps, greedy),
    }
    examples = examples_from(pairs, history, warmup.patched_fraction, seed)
    lora = warmup.over(shape)
    scratch = folder.with_name(folder.name + ".adapter")
    trained = train_lora(base, examples, lora, scratch, progress=progress)
    merge_adapter(trained.student, folder)
    shutil.rmtree(scratch, ignore_errors=True)

    student = Student.load(student_params.model_copy(update={"model_path": str(folder)}))
    temperatures = {**greedy, "sampled": phase0.temperature}
    after = {
        "shift": in_context_shift(student, probe, history),
        "success": evaluate(student, eval_tasks, seed, warmup.max_steps, temperatures),
    }
    report = {
        "key": warmup_key(student_params, warmup, shape, levels, seed),
        "n_train_tasks": len(train_tasks),
        "n_examples": len(examples),
        "n_eval_tasks": len(eval_tasks),
        "before": before,
        "after": after,
        "losses": trained.losses,
        "train_seconds": round(trained.seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(PreparedStudentLayout(folder).report, report)
    return report
