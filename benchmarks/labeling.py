"""Phase 1 labeling speed: every rollout of every snapshot batched, versus one rollout at a time.

Labels the same snapshots (the first 8 of `runs/pilot/phase0/failure_snapshots.json` when a
pilot has run, else 8 failure snapshots collected here) with the labels of Phase 1 (leverage
and the contextual patch test, with the pilot's counts) twice: through the batched labeler
(one `run_episodes` call for all rollouts) and with `run_episodes` called once per rollout.
Both use the same seeds, so the labels should agree; prints snapshots per hour for each and
their ratio.

    .venv/bin/python benchmarks/labeling.py [--params parameters/pilot.yaml] [--model tiny]
        [--snapshots 8] [--sequential 8] [--threads N]

`--sequential K` times the one-at-a-time loop on the first K snapshots only (it is slow).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from teachable.models.student import Student
from teachable.models.teachers import make_teacher
from teachable.parameters import Parameters, load_parameters
from teachable.phases.phase0_snapshots import collect_student_failures
from teachable.phases.phase0_warmup import load_prepared_student
from teachable.phases.phase1_labels import measure, teacher_request
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPOSITORY / "parameters" / "pilot.yaml")
    parser.add_argument("--model", help="student model instead of the pilot's (e.g. tiny)")
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--sequential", type=int, help="snapshots timed one rollout at a time")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    params = load_parameters(args.params)
    phase1 = params.phase1
    student = benchmark_student(params, args.model)
    snapshots = benchmark_snapshots(params, student, args.snapshots)
    answers = make_teacher(params).advise([teacher_request(s) for s in snapshots])
    rollouts = 2 * phase1.n_rollouts + 5 * phase1.n_per_condition
    print(
        f"student: {student.params.model_path or student.params.model}, threads: "
        f"{torch.get_num_threads()}, batch size {student.params.batch_size}\n"
        f"{len(snapshots)} snapshots x {rollouts} rollouts (n_rollouts {phase1.n_rollouts}, "
        f"n_per_condition {phase1.n_per_condition}), max_steps {phase1.max_steps}"
    )

    started = time.perf_counter()
    batched = measure(student, snapshots, answers, phase1, params.run.seed)
    batched_seconds = time.perf_counter() - started
    k = args.sequential or len(snapshots)
    started = time.perf_counter()
    reference = measure(student, snapshots[:k], answers[:k], phase1, params.run.seed, batched=False)
    sequential_seconds = time.perf_counter() - started

    agree = sum(a == b for a, b in zip(batched, reference, strict=False))
    batched_rate = 3600 * len(snapshots) / batched_seconds
    sequential_rate = 3600 * k / sequential_seconds
    print(f"batched:        {batched_seconds:8.1f} s for {len(snapshots)}: {batched_rate:8.1f} /h")
    print(f"one at a time:  {sequential_seconds:8.1f} s for {k}: {sequential_rate:8.1f} /h")
    print(f"ratio: {batched_rate / sequential_rate:.1f}x; identical labels: {agree} of {k}")


if __name__ == "__main__":
    main()
