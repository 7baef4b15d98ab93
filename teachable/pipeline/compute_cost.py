"""What a run of given parameters costs in compute: CPU hours at the pace of a finished run
(or of the unit table), and GPU hours from a stated FLOPs model a reader can disagree with.

Every kind of unit (`pipeline.workload`) does two kinds of work, counted per unit from the
parameters: student states scored (one prompt's forward pass; the six actions share the
prompt's prefix) and examples trained (forward and backward; anchor states count as trained
examples and add a scored pass of the reference). Rollouts are counted at their step limit, so
the work is an upper bound.

- CPU: a unit's seconds are the unit table's, paced by the run's own record, times the unit's
  work at the planned parameters over its work at the parameters the pace was measured with;
  a phase adds its start. The warm-up counts once, as on a new machine.
- GPU: FLOPs per scored state 2 N T and per trained example 4 N T (forward 2 N T, backward
  through the activations 2 N T; frozen weights need no weight gradient), N the student's
  parameters and T the tokens of a scoring prompt, at `EFFECTIVE_FLOPS` per second; phase
  starts and the CPU-bound environment steps are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from teachable.parameters import Parameters
from teachable.pipeline.unit_times import (
    RecordedPhase,
    UnitTable,
    expected_time,
    recorded_phase,
    unit_table,
)
from teachable.pipeline.workload import (
    DOSE_TRAININGS,
    EXPERT_EPISODES,
    MATRIX_RUNS,
    MICRO_TRAININGS,
    MODELS_TO_EVALUATE,
    PREDICTOR_FITS,
    RETEST_SNAPSHOTS,
    SELECTED_MODELS,
    SELECTION_RUNS,
    SNAPSHOTS_TO_LABEL,
    STUDENT_EPISODES,
    TEST_SNAPSHOTS,
    WARMUP,
    WORKLOADS,
    labels_to_buy,
    phase_units,
)
from teachable.records.layout import RunLayout

PROMPT_TOKENS = 400  # T: a scoring prompt (instructions, mission, observation, history 0)

EFFECTIVE_FLOPS = 1.5e14  # per second on one H100 in bf16: ~15% of its 989 TFLOP/s dense peak

STUDENT_SIZES = {"default": 134.5e6, "tiny": 1.0e6}  # N: SmolLM2-135M, the tiny test model

TRAINED_FLOPS_PER_TOKEN = 4  # x N per token: forward and backward through the activations

SCORED_FLOPS_PER_TOKEN = 2  # x N per token: a forward pass


@dataclass(frozen=True)
class UnitWork:
    """The work of one unit: student states scored and examples trained."""

    scored: float
    trained: float

    def plus(self, other: UnitWork) -> UnitWork:
        return UnitWork(self.scored + other.scored, self.trained + other.trained)

    def cpu_weight(self) -> float:
        """The unit's work in forward passes, what its CPU time scales with."""
        return self.scored + TRAINED_FLOPS_PER_TOKEN / SCORED_FLOPS_PER_TOKEN * self.trained


def _training(steps: int, batch: int, anchors: int, probes: int) -> UnitWork:
    """A dosed training: its steps of a batch and the anchor states (each scored by the
    reference too), then the probe states scored with and without the adapter."""
    return UnitWork(scored=steps * anchors + 2 * probes, trained=steps * (batch + anchors))


def _labeling(p: Parameters) -> float:
    """States scored labeling one snapshot: base, forced, placebo and three formats."""
    phase1 = p.phase1
    base = max(phase1.n_rollouts, phase1.n_per_condition)
    return phase1.max_steps * (base + phase1.n_rollouts + 4 * phase1.n_per_condition)


def _evaluation(p: Parameters) -> float:
    """States scored evaluating one model: held-out tasks, test snapshots, retention tasks."""
    phase3 = p.phase3
    items = (
        phase3.n_tasks
        + 4 * phase3.n_snapshots_per_quadrant
        + phase3.retention_tasks * len(phase3.retention_levels)
    )
    return items * p.evaluation.episodes_per_item * phase3.max_steps


def _probes(p: Parameters) -> int:
    training = p.training
    return (training.probe_tasks + training.probe_retention_tasks) * training.probe_states_per_task


def _steps(p: Parameters) -> int:
    return max(p.training.grid.steps)


def unit_work(kind: str, p: Parameters) -> UnitWork:
    """The work of one unit of `kind` under the parameters `p`."""
    phase0, training = p.phase0, p.training
    anchors = training.anchor_per_step
    works: dict[str, Callable[[], UnitWork]] = {
        WARMUP: lambda: UnitWork(
            2 * phase0.warmup.eval_tasks * phase0.warmup.max_steps,
            phase0.warmup.steps * (phase0.warmup.batch_size or p.lora.batch_size),
        ),
        STUDENT_EPISODES: lambda: UnitWork(phase0.max_steps, 0),
        EXPERT_EPISODES: lambda: UnitWork(phase0.expert.max_steps * phase0.expert.sample_rate, 0),
        SNAPSHOTS_TO_LABEL: lambda: UnitWork(_labeling(p), 0),
        RETEST_SNAPSHOTS: lambda: UnitWork(_labeling(p), 0),
        TEST_SNAPSHOTS: lambda: UnitWork(2 * p.phase1.n_rollouts * p.phase1.max_steps, 0),
        DOSE_TRAININGS: lambda: _training(
            _steps(p), p.phase2.batch_size or p.lora.batch_size, anchors, _probes(p)
        ),
        MICRO_TRAININGS: lambda: UnitWork(
            3 * p.phase1b.n_validation_rollouts * p.phase1b.max_steps, 0
        ).plus(_training(2 * _steps(p), 1, anchors, _probes(p) // 2)),
        MATRIX_RUNS: lambda: _training(
            _steps(p), p.phase2.batch_size or p.lora.batch_size, anchors, _probes(p)
        ),
        MODELS_TO_EVALUATE: lambda: UnitWork(_evaluation(p), 0),
        PREDICTOR_FITS: lambda: UnitWork(0, 0),
        labels_to_buy("oracle"): lambda: UnitWork(_labeling(p), 0),
        labels_to_buy("learnability"): lambda: UnitWork(
            p.phase1.n_rollouts * p.phase1.max_steps, 0
        ),
        SELECTION_RUNS: lambda: _training(
            _steps(p), p.phase5.batch_size or p.lora.batch_size, anchors, _probes(p)
        ),
        SELECTED_MODELS: lambda: UnitWork(_evaluation(p), 0),
    }
    return works[kind]() if kind in works else UnitWork(0, 0)


def planned_units(p: Parameters) -> dict[str, dict[str, int]]:
    """Every phase's units as a fresh run of `p` plans them (the warm-up included)."""
    return {
        phase: {units.kind: units.planned for units in phase_units(phase, p, None)}
        for phase in WORKLOADS
    }


def _ratio(kind: str, planned: Parameters, paced: Parameters) -> float:
    """How much more work a unit of `kind` does under `planned` than under `paced`."""
    then, now = unit_work(kind, planned).cpu_weight(), unit_work(kind, paced).cpu_weight()
    return then / now if now > 0 else 1.0


def recorded_phases(run: RunLayout, table: UnitTable) -> dict[str, RecordedPhase | None]:
    """Each phase as `run` last ran units of it (None where it has no record), read once."""
    return {phase: recorded_phase(run, phase, table) for phase in WORKLOADS}


def cpu_seconds(
    planned: Parameters, paced: Parameters, recorded: Mapping[str, RecordedPhase | None]
) -> float:
    """The seconds a fresh run of `planned` takes on this kind of machine: each phase's start
    and its units at the pace the run `recorded` (the table's where it has none), each unit
    scaled by its work under `planned` over its work under `paced`, the parameters that pace
    was measured with."""
    table = unit_table(planned.student)
    total = 0.0
    for phase, units in planned_units(planned).items():
        scaled = {kind: count * _ratio(kind, planned, paced) for kind, count in units.items()}
        total += expected_time(scaled, recorded.get(phase), table).seconds
    return total


def student_size(p: Parameters) -> float | None:
    """N, the student's parameters: the stated size of a named student; None for another."""
    return STUDENT_SIZES.get(p.student.model)


def gpu_seconds(p: Parameters, size: float | None = None) -> float | None:
    """The seconds a fresh run of `p` takes on one GPU under the FLOPs model, for a student of
    `size` parameters (the configured one's where None); None where its size is not known."""
    size = size or student_size(p)
    if size is None:
        return None
    flops = 0.0
    for units in planned_units(p).values():
        for kind, count in units.items():
            work = unit_work(kind, p)
            per_token = (
                SCORED_FLOPS_PER_TOKEN * work.scored + TRAINED_FLOPS_PER_TOKEN * work.trained
            )
            flops += count * per_token * size * PROMPT_TOKENS
    return flops / EFFECTIVE_FLOPS


def cost_model(size: float | None) -> str:
    """The GPU model's constants, in a line the plan prints."""
    n = "unknown" if size is None else f"{size:.3g}"
    return (
        f"GPU: {SCORED_FLOPS_PER_TOKEN} N T FLOPs per scored state, {TRAINED_FLOPS_PER_TOKEN} N T "
        f"per trained example, N = {n} parameters, T = {PROMPT_TOKENS} tokens, "
        f"{EFFECTIVE_FLOPS:.2g} FLOP/s effective (~15% of an H100's bf16 dense peak)"
    )
