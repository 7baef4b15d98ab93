"""`plan.json`: what a run of other sizes would tell, verdict by verdict, and what it costs. The
planner (`pipeline.planner`) writes it and `plan` prints it; this module is its schema."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from teachable.records.estimate import Estimate
from teachable.records.store import read_json, write_json
from teachable.records.verdicts import Side


class Compute(BaseModel):
    """The compute of a fresh run: CPU hours on this kind of machine at the measured pace, and
    GPU hours under the stated FLOPs model (None where the student's size is not known)."""

    cpu_hours: float
    gpu_hours: float | None


class VerdictPlan(BaseModel):
    """One primary verdict: today's estimate (or the stated default it plans from), the
    half-width expected at the planned parameters' sizes, and the sizes that would decide it:
    every level grown by `scale`, with the parameters that set them and the compute."""

    phase: str
    criterion: str
    side: Side
    threshold: float
    basis: str
    today: Estimate
    half_today: float | None
    sizes_today: dict[str, float]
    sizes_planned: dict[str, float]
    half_planned: float | None
    wanted_half: float | None
    wanted: str
    scale: float | None
    sizes_needed: dict[str, float]
    parameters_needed: dict[str, int]
    compute_needed: Compute | None
    notes: list[str] = []


class Plan(BaseModel):
    """`plan.json`: the run planned from, the parameters planned for, the confidence a decision
    is planned at, the compute of the planned run, and each primary verdict's plan."""

    run: str
    planned_for: str
    decision_confidence: float
    target_half_width: float | None
    compute_planned: Compute
    cost_model: str
    cpu_basis: str
    verdicts: list[VerdictPlan]

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls.model_validate(read_json(path))
