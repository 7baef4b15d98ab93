"""The executor the `execution` section picks: local workers in this process, or Ray actors.

`start_workers(execution, student)` gives a phase its `Workers` (`models.workers`). With
`backend: ray` it joins (or starts) a Ray instance and keeps up to `max_workers` actors, each
holding the student loaded once; units go to whichever actor is idle, and their results come
back through Ray's object store to the driver, which writes them. A worker whose process dies
is restarted and its unit rerun, `max_retries` times; a unit that still fails stops the map
with `UnitFailed` after every finished unit has been handed back. Ray is imported only here,
and only for `backend: ray`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

from teachable.models.student import Student
from teachable.models.workers import LocalWorkers, UnitFailed, Work, Workers, WorkUnit
from teachable.parameters import ExecutionParameters, StudentParameters


class StudentActor:
    """A Ray worker: loads the student once, then runs units on it with `threads` torch
    threads (`execution.torch_threads`, as the local backend does)."""

    def __init__(self, params: StudentParameters, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.student = Student.load(params)

    def run(self, work: Work, payload: Any) -> Any:
        return work(self.student, payload)

    def pid(self) -> int:
        return os.getpid()


def worker_count(execution: ExecutionParameters, resources: dict[str, float]) -> int:
    """How many workers fit the cluster's `resources`, at most `max_workers`."""
    fits = [int(resources.get("CPU", 0) // execution.num_cpus_per_worker)]
    if execution.num_gpus_per_worker:
        fits.append(int(resources.get("GPU", 0) // execution.num_gpus_per_worker))
    count = min(fits)
    if execution.max_workers is not None:
        count = min(count, execution.max_workers)
    if count < 1:
        raise ValueError(
            f"execution: the Ray cluster holds {resources.get('CPU', 0)} CPU and "
            f"{resources.get('GPU', 0)} GPU; no worker fits num_cpus_per_worker="
            f"{execution.num_cpus_per_worker}, num_gpus_per_worker="
            f"{execution.num_gpus_per_worker}"
        )
    return count


class RayWorkers:
    """Units on Ray actors that each keep the student loaded; the actors start at the first
    map and live until `close` (or the end of the process)."""

    def __init__(self, execution: ExecutionParameters, params: StudentParameters) -> None:
        import ray

        self.execution = execution
        self.params = params
        if not ray.is_initialized():
            ray.init(address=execution.address, include_dashboard=False, log_to_driver=False)
        self._actors: list = []

    @property
    def actors(self) -> list:
        """The actors, started on first use."""
        if not self._actors:
            import ray

            execution = self.execution
            count = worker_count(execution, ray.cluster_resources())
            actor = ray.remote(StudentActor).options(
                num_cpus=execution.num_cpus_per_worker,
                num_gpus=execution.num_gpus_per_worker,
                max_restarts=execution.max_retries,
                max_task_retries=execution.max_retries,
            )
            self._actors = [
                actor.remote(self.params, execution.torch_threads) for _ in range(count)
            ]
        return self._actors

    def pids(self) -> list[int]:
        """The process id of each worker now (a restarted worker has a new one)."""
        import ray

        return ray.get([actor.pid.remote() for actor in self.actors])

    def map(
        self,
        work: Work,
        units: Iterable[WorkUnit],
        desc: str,
        total: int | None = None,
        progress: bool = True,
    ) -> Iterator[tuple[WorkUnit, Any]]:
        """Each unit on an idle actor; results are handed back in the order the units came, so
        the driver writes the same files as the local backend. After a failure no new unit
        starts; the units in flight finish and every finished one is handed back, then
        `UnitFailed` names the unit that failed."""
        import ray

        pending = enumerate(units)
        idle = list(self.actors)
        in_flight: dict[Any, tuple[int, WorkUnit, Any]] = {}
        finished: dict[int, tuple[WorkUnit, Any]] = {}
        failure: UnitFailed | None = None
        handed = 0
        with tqdm(total=total, desc=desc, unit="unit", disable=not progress) as bar:
            while True:
                while idle and failure is None and (item := next(pending, None)) is not None:
                    index, unit = item
                    actor = idle.pop()
                    in_flight[actor.run.remote(work, unit.payload)] = (index, unit, actor)
                if not in_flight:
                    break
                [ready], _ = ray.wait(list(in_flight), num_returns=1)
                index, unit, actor = in_flight.pop(ready)
                idle.append(actor)
                try:
                    finished[index] = (unit, ray.get(ready))
                except ray.exceptions.RayError as error:
                    failure = failure or UnitFailed(unit.id, str(error))
                    continue
                bar.update()
                while handed in finished:
                    yield finished.pop(handed)
                    handed += 1
        yield from (finished[index] for index in sorted(finished))
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Stop the actors (their students are freed)."""
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


def start_workers(execution: ExecutionParameters, student: StudentParameters) -> Workers:
    """The workers `execution` names for the student `student` describes (local ones load it
    here, now; Ray's load it in each actor at the first unit)."""
    if execution.backend == "ray":
        return RayWorkers(execution, student)
    return LocalWorkers(Student.load(student), execution.torch_threads)
