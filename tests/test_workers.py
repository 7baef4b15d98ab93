"""Local workers run every unit on the torch threads `execution.torch_threads` names, as each
Ray worker does, and leave the process's own thread count as it was."""

import torch

from teachable.models.student import Student
from teachable.models.workers import LocalWorkers, WorkUnit
from teachable.parameters import ExecutionParameters
from teachable.pipeline.execution import start_workers


def threads_of_the_unit(student: Student, payload: None) -> int:
    return torch.get_num_threads()


def test_local_units_run_on_the_threads_the_execution_section_names(student: Student) -> None:
    before = torch.get_num_threads()
    workers = LocalWorkers(student, threads=1)
    units = [WorkUnit("a", None), WorkUnit("b", None)]
    ran = [threads for _, threads in workers.map(threads_of_the_unit, units, "threads", 2, False)]
    assert ran == [1, 1]
    assert torch.get_num_threads() == before
    execution = ExecutionParameters(torch_threads=3)
    assert start_workers(execution, student.params).threads == 3
