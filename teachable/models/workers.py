"""Workers: who plays and trains the student for a phase, one unit of work at a time.

A phase cuts its work into units (a labeling group, a micro-training, a matrix run, a model's
evaluation). A unit is an id and a payload; `work(student, payload)` is a module-level
function whose result depends on the payload alone, never on which worker runs it or when.
The phase (the driver) hands the units to `Workers.map` and writes each result as it comes
back, so it stays the only writer of the run folder on every backend.

`LocalWorkers` runs the units in this process on one loaded student; `pipeline.execution`
runs them on Ray actors that each keep the student loaded. Both run every unit with the same
number of torch threads, so a unit's floating-point sums, and the files, come out the same on
either. Both count finished units on a progress bar, and both stop with `UnitFailed`, naming
the unit, once a unit fails for good, after every unit that finished before it has been handed
back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from teachable.models.student import Student
from teachable.parameters import TORCH_THREADS, StudentParameters

Work = Callable[[Student, Any], Any]


@dataclass(frozen=True)
class WorkUnit:
    """One unit of a phase's work: its id (named when it fails) and what `work` needs."""

    id: str
    payload: Any


class UnitFailed(RuntimeError):
    """A unit failed for good; the units finished before it were handed back and written."""

    def __init__(self, unit_id: str, error: str) -> None:
        super().__init__(f"unit {unit_id} failed: {error}")
        self.unit_id = unit_id
        self.error = error


class Workers(Protocol):
    """Runs units on the student that `params` names, handing back each result as it ends."""

    params: StudentParameters

    def map(
        self,
        work: Work,
        units: Iterable[WorkUnit],
        desc: str,
        total: int | None = None,
        progress: bool = True,
    ) -> Iterator[tuple[WorkUnit, Any]]: ...


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch on `count` threads inside the block, on as many as before after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalWorkers:
    """Units run one after another in this process, on `student`, with `threads` torch threads
    (`execution.torch_threads`, as on each Ray worker)."""

    def __init__(self, student: Student, threads: int = TORCH_THREADS) -> None:
        self.student = student
        self.params = student.params
        self.threads = threads

    def map(
        self,
        work: Work,
        units: Iterable[WorkUnit],
        desc: str,
        total: int | None = None,
        progress: bool = True,
    ) -> Iterator[tuple[WorkUnit, Any]]:
        with (
            tqdm(total=total, desc=desc, unit="unit", disable=not progress) as bar,
            torch_threads(self.threads),
        ):
            for unit in units:
                try:
                    result = work(self.student, unit.payload)
                except Exception as error:
                    raise UnitFailed(unit.id, repr(error)) from error
                bar.update()
                yield unit, result


def pack_folder(folder: Path) -> dict[str, bytes]:
    """A folder's files by relative path: how an adapter a worker trained travels to the
    driver (and one the driver holds to a worker) without a shared file system."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def unpack_folder(files: dict[str, bytes], folder: Path) -> None:
    """Write the files of `pack_folder` into `folder`."""
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
