"""Executor overhead: the same snapshots labeled by the local backend and by Ray workers.

Labels N snapshots (as `labeling.py` picks them: the run's Phase 0 failure snapshots, else
fresh ones) with Phase 1's labels, one snapshot per unit (`phase1.batch_snapshots: 1`), three
times: with the local backend (every unit in this process, torch on all cores), on one Ray
worker holding all cores, and on `--workers` Ray workers with one core each. Checks that the
three give the same rows, and prints each one's time, Ray's start-up (instance and actors with
their students loaded), and the overhead per unit: (one Ray worker - local) / units, beside the
local time of a unit. On a machine with two cores, two workers buy no speed-up.

    .venv/bin/python benchmarks/executors.py [--params parameters/pilot.yaml] [--snapshots 8]
        [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from labeling import benchmark_snapshots

from teachable.models.student import Student
from teachable.models.teachers import make_teacher
from teachable.models.workers import LocalWorkers, Workers
from teachable.parameters import ExecutionParameters, Parameters, load_parameters
from teachable.phases.phase0_warmup import prepared_student
from teachable.phases.phase1_labels import label_snapshots
from teachable.records.layout import Phase1Layout
from teachable.records.snapshot import Snapshot

REPOSITORY = Path(__file__).resolve().parent.parent


def timed_labels(
    workers: Workers, snapshots: list[Snapshot], params: Parameters
) -> tuple[list[dict], float]:
    """The labeled rows of `snapshots` on `workers`, one snapshot per unit, and the seconds."""
    phase1 = params.phase1.model_copy(update={"batch_snapshots": 1, "reliability_panel": 0})
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        report = label_snapshots(
            snapshots,
            phase1,
            params.run.seed,
            workers,
            make_teacher(params),
            Phase1Layout(Path(folder)),
            progress=False,
        )
        seconds = time.perf_counter() - started
    return [row.model_dump() for row in report.rows], seconds


def ray_labels(
    params: Parameters, snapshots: list[Snapshot], workers: int, cores: int
) -> tuple[list[dict], float, float]:
    """Rows and seconds on `workers` Ray actors of `cores` CPUs each, and their start-up time."""
    from teachable.pipeline.execution import RayWorkers

    execution = ExecutionParameters(
        backend="ray",
        max_workers=workers,
        num_cpus_per_worker=cores,
        torch_threads=cores,
        max_retries=0,
    )
    started = time.perf_counter()
    pool = RayWorkers(execution, params.student)
    pool.pids()  # the actors are up and hold their students
    start_up = time.perf_counter() - started
    rows, seconds = timed_labels(pool, snapshots, params)
    pool.close()
    return rows, seconds, start_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPOSITORY / "parameters" / "pilot.yaml")
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    warnings.filterwarnings("ignore", message=".*fewer than min_per_quadrant")  # a few snapshots

    params = load_parameters(args.params)
    try:
        params.student = prepared_student(params.layout.phase0)
    except FileNotFoundError:
        print(f"{params.layout.phase0.warmup} is missing: the raw student {params.student.model}")
    cores = os.cpu_count() or 1
    student = Student.load(params.student)
    snapshots = benchmark_snapshots(params, student, args.snapshots)
    phase1 = params.phase1
    print(
        f"student: {params.student.model_path or params.student.model}; {cores} cores; "
        f"{len(snapshots)} units of one snapshot, n_rollouts {phase1.n_rollouts}, "
        f"n_per_condition {phase1.n_per_condition}"
    )

    local_rows, local = timed_labels(LocalWorkers(student, cores), snapshots, params)
    del student
    one_rows, one, one_start = ray_labels(params, snapshots, 1, cores)
    many_rows, many, many_start = ray_labels(params, snapshots, args.workers, cores // args.workers)
    units = len(snapshots)
    threads = torch.get_num_threads()
    print(f"local, torch threads {threads}: {local:8.1f} s ({local / units:.2f} s/unit)")
    print(f"ray, 1 worker x {cores} CPUs:     {one:8.1f} s, start-up {one_start:.1f} s")
    print(
        f"ray, {args.workers} workers x {cores // args.workers} CPU:      {many:8.1f} s, "
        f"start-up {many_start:.1f} s, speed-up over local {local / many:.2f}x"
    )
    overhead = (one - local) / units
    print(
        f"overhead per unit: {overhead:.2f} s against {local / units:.2f} s of work "
        f"({overhead / (local / units):.1%})"
    )
    same = local_rows == one_rows == many_rows
    print(f"rows identical across the three: {same}")


if __name__ == "__main__":
    main()
