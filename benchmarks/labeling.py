"""Phase 1 labeling speed: identical prompts scored once per batch, versus every prompt scored.

Labels the same snapshots (the first N of `runs/pilot/phase0/failure_snapshots.json` when a
pilot has run, else N failure snapshots collected here) with the labels of Phase 1 (leverage
and the contextual patch test, with the pilot's counts) twice, each in one `run_episodes` call
on the same paired streams: with shared scoring (each distinct prompt scored once; rollout i of
every condition rejoins the base trajectory wherever its first action agrees) and without (every
episode's prompt scored in the batch). Prints snapshots per hour of both and their ratio, the
prompts each scored, and every label that differs, traced to the first step where an episode's
actions part and the largest difference of the two distributions there (batch effects of
floating point move probabilities by ~1e-6).

    .venv/bin/python benchmarks/labeling.py [--params parameters/pilot.yaml] [--model default]
        [--snapshots 8] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from teachable.models.conditions import rollout_plan, run_conditions, teacher_request
from teachable.models.labeling import Measured, measured_from
from teachable.models.rollouts import Episode
from teachable.models.student import Student
from teachable.models.teachers import make_teacher
from teachable.parameters import Parameters, Phase1Parameters, load_parameters
from teachable.phases.phase0_snapshots import collect_student_failures
from teachable.phases.phase0_warmup import load_prepared_student
from teachable.records.labeled import TeacherAnswer
from teachable.records.layout import Phase0Layout
from teachable.records.snapshot import Snapshot
from teachable.world.replay import load_replayed_snapshots

REPOSITORY = Path(__file__).resolve().parent.parent


def benchmark_student(params: Parameters, model: str | None) -> Student:
    """`--model` when given, else the pilot's prepared student, else the raw default."""
    if model is not None:
        return Student.load(params.student.model_copy(update={"model": model}))
    try:
        return load_prepared_student(params.layout.phase0)
    except FileNotFoundError:
        return Student.load(params.student)


def benchmark_snapshots(params: Parameters, student: Student, count: int) -> list[Snapshot]:
    """The run's Phase 0 failure snapshots, or fresh ones from a few student rollouts."""
    path = params.layout.phase0.failure_snapshots
    if path.is_file():
        snapshots = load_replayed_snapshots(path)[:count]
        print(f"snapshots: the first {len(snapshots)} of {path}")
        return snapshots
    print(f"snapshots: {path} is missing; collecting {count} failure snapshots")
    phase0 = params.phase0.model_copy(update={"n_tasks": 2 * count, "max_snapshots": count})
    with tempfile.TemporaryDirectory() as folder:
        _, snapshots = collect_student_failures(
            student, phase0, params.env.levels, params.run.seed, Phase0Layout(Path(folder))
        )
    if len(snapshots) < count:
        raise RuntimeError(f"only {len(snapshots)} failure snapshots found; need {count}")
    return snapshots


class CountingStudent:
    """Counts the prompts the wrapped student scores."""

    def __init__(self, student: Student) -> None:
        self.scored = 0
        self._score = student.action_logprobs
        student.action_logprobs = self

    def __call__(self, prompts, *args, **kwargs) -> np.ndarray:
        self.scored += len(prompts)
        return self._score(prompts, *args, **kwargs)


def labels(
    student: Student,
    snapshots: Sequence[Snapshot],
    answers: Sequence[TeacherAnswer],
    phase1: Phase1Parameters,
    seed: int,
    share_scores: bool,
) -> tuple[dict[tuple[str, str], list[Episode]], list[Measured], float]:
    """Every episode and label of the snapshots (their rollouts in one `run_episodes` call),
    and the time they took."""
    started = time.perf_counter()
    plan = [
        condition
        for snapshot, answer in zip(snapshots, answers, strict=True)
        for condition in rollout_plan(snapshot, answer, phase1, True, True)
    ]
    episodes = run_conditions(student, plan, phase1, seed, share_scores=share_scores)
    measured = measured_from(snapshots, episodes, phase1, True, True)
    return episodes, measured, time.perf_counter() - started


def parting(first: Episode, second: Episode) -> tuple[int, float] | None:
    """Where two episodes' actions part, and the largest probability difference there."""
    for step, (a, b) in enumerate(zip(first.steps, second.steps, strict=False)):
        if a.action != b.action:
            gap = max(abs(p - q) for p, q in zip(a.distribution, b.distribution, strict=True))
            return step, gap
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPOSITORY / "parameters" / "pilot.yaml")
    parser.add_argument("--model", help="student model instead of the pilot's (e.g. default)")
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    params = load_parameters(args.params)
    phase1, seed = params.phase1, params.run.seed
    student = benchmark_student(params, args.model)
    snapshots = benchmark_snapshots(params, student, args.snapshots)
    answers = make_teacher(params).advise([teacher_request(s) for s in snapshots])
    n_base = max(phase1.n_rollouts, phase1.n_per_condition)
    rollouts = n_base + phase1.n_rollouts + 4 * phase1.n_per_condition
    print(
        f"student: {student.params.model_path or student.params.model}, threads: "
        f"{torch.get_num_threads()}, batch size {student.params.batch_size}\n"
        f"{len(snapshots)} snapshots x {rollouts} rollouts (n_rollouts {phase1.n_rollouts}, "
        f"n_per_condition {phase1.n_per_condition}), max_steps {phase1.max_steps}"
    )

    counter = CountingStudent(student)
    shared_episodes, shared, shared_seconds = labels(
        student, snapshots, answers, phase1, seed, share_scores=True
    )
    shared_prompts, counter.scored = counter.scored, 0
    alone_episodes, alone, alone_seconds = labels(
        student, snapshots, answers, phase1, seed, share_scores=False
    )
    alone_prompts = counter.scored

    steps = sum(len(e.steps) for runs in alone_episodes.values() for e in runs)
    shared_rate = 3600 * len(snapshots) / shared_seconds
    alone_rate = 3600 * len(snapshots) / alone_seconds
    print(
        f"shared scoring: {shared_seconds:8.1f} s, {shared_prompts} prompts scored, "
        f"{shared_rate:.1f} snapshots/h"
    )
    print(
        f"every prompt:   {alone_seconds:8.1f} s, {alone_prompts} prompts scored "
        f"({steps} episode steps), {alone_rate:.1f} snapshots/h"
    )
    print(f"ratio: {shared_rate / alone_rate:.2f}x")

    differing = [s.id for s, a, b in zip(snapshots, shared, alone, strict=True) if a != b]
    print(f"labels identical on {len(snapshots) - len(differing)} of {len(snapshots)} snapshots")
    episodes = parted = 0
    for (snapshot_id, condition), runs in shared_episodes.items():
        reference = alone_episodes[snapshot_id, condition]
        for index, (a, b) in enumerate(zip(runs, reference, strict=True)):
            episodes += 1
            where = parting(a, b)
            if where is not None:
                parted += 1
                print(
                    f"  {snapshot_id} {condition} rollout {index}: actions part at step "
                    f"{where[0]}, max |dp| there {where[1]:.1e}"
                )
    print(f"episodes whose actions differ: {parted} of {episodes}")


if __name__ == "__main__":
    main()
