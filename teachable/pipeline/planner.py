"""The planner: from a run's primary verdicts, what a run of other sizes would tell and what it
would cost (`python -m teachable plan RUN [--for PARAMS] [--target HALF_WIDTH]`).

Each primary estimate carries its variance components and design (`records.estimate`); each of
its levels is set by one parameter, its lever (`LEVERS`): a level grows with its lever's value
(a list of seeds with its length). For each primary verdict the planner gives today's interval,
the half-width expected at the sizes `PARAMS` plans (95%, as today's), and the sizes needed to
decide it, at the confidence of Holm's first step (so that it is decided whatever its rank in
the family): of every set of its levels grown together by the smallest factor that makes the
expected interval clear the threshold if the estimate holds (or reach `--target`), the one of
fewest CPU hours (items alone, seeds alone, both). Each size comes with the parameters that set it
(those of `PARAMS`, the verdict's levers changed) and the compute of a fresh run at those
parameters (`pipeline.compute_cost`). A level this run has one of (one seed) has no variance
to scale and stays at one.

A verdict the run has not judged, or whose interval carries no information, is planned from
the stated defaults (`plan_defaults.json`: the pilot's estimates where they inform, else the
first mini run's), and says so. Sizes are as the parameters plan them: where the snapshots or
quadrants run short, a run gets fewer.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

from teachable.measure.multiplicity import FAMILYWISE_ERROR
from teachable.measure.planning import (
    current_sizes,
    gap_to_threshold,
    needed_scale,
    predicted_half,
)
from teachable.measure.specificity import SEEDS
from teachable.measure.verdicts import uninformative
from teachable.parameters import Parameters, with_overrides
from teachable.pipeline.compute_cost import (
    cost_model,
    cpu_seconds,
    gpu_seconds,
    recorded_phases,
    student_size,
)
from teachable.pipeline.unit_times import RecordedPhase, unit_table
from teachable.records.estimate import CONFIDENCE, Estimate
from teachable.records.layout import RunLayout
from teachable.records.plan import Compute, Plan, VerdictPlan
from teachable.records.verdicts import PRIMARY_FAMILY, Verdict, Verdicts

DECISION_CONFIDENCE = 1 - FAMILYWISE_ERROR / len(PRIMARY_FAMILY)  # Holm's first step


@dataclass(frozen=True)
class Lever:
    """The parameter that sets a level's size, by its dotted path (`phase3.n_tasks`), times the
    parameters in `per` that the plan holds fixed (the formats each seed trains)."""

    path: str
    per: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return " x ".join((self.path, *self.per))

    @staticmethod
    def setting(parameters: Parameters, path: str) -> object:
        """The parameter at `path` as set."""
        value: object = parameters
        for key in path.split("."):
            value = getattr(value, key)
        return value

    @staticmethod
    def count(parameters: Parameters, path: str) -> int | None:
        """The size a parameter gives: its value, a list's length; None where unset (null)."""
        setting = Lever.setting(parameters, path)
        return len(setting) if isinstance(setting, list) else setting

    def value(self, parameters: Parameters) -> int | None:
        """The level's size under the parameters; None where a factor is unset."""
        counts = [self.count(parameters, path) for path in (self.path, *self.per)]
        return None if None in counts else math.prod(counts)

    def set(self, parameters: Parameters, size: int) -> Parameters:
        """The parameters with the level at `size` or just above: the lever at `size` over the
        held factors, rounded up (seeds 0 to k - 1 for a list)."""
        held = math.prod(self.count(parameters, path) or 1 for path in self.per)
        value = math.ceil(size / held)
        listed = isinstance(self.setting(parameters, self.path), list)
        text = json.dumps(list(range(value)) if listed else value)
        sections = type(parameters).model_fields
        return with_overrides(parameters, [f"{self.path}={text}"], sections)


EVALUATED = {"items": Lever("phase3.n_tasks"), "episodes": Lever("evaluation.episodes_per_item")}

LEVERS: dict[tuple[str, str], dict[str, Lever]] = {
    ("phase1a", "do-no-harm drift"): {
        "probe states": Lever("training.probe_tasks", ("training.probe_states_per_task",)),
        SEEDS: Lever("training.check_seeds"),
    },
    ("phase1a", "do-no-harm retention"): {
        "probe states": Lever(
            "training.probe_retention_tasks", ("training.probe_states_per_task",)
        ),
        SEEDS: Lever("training.check_seeds"),
    },
    ("phase1b", "rho"): {"pairs": Lever("phase1b.n_per_quadrant")},
    ("phase1b", "q1_minus_q2"): {
        "Q1 snapshots": Lever("phase1b.n_per_quadrant"),
        "Q2 snapshots": Lever("phase1b.n_per_quadrant"),
    },
    ("phase3", "Q1_highU_highL - Q2_highU_lowL success"): {
        "runs": Lever("phase2.seeds", ("phase2.formats",)),
        **EVALUATED,
    },
    ("phase4", "L_local_r2"): {"rows": Lever("phase1.max_snapshots")},
    ("phase4", "quadrant_accuracy"): {"n": Lever("phase1.max_snapshots")},
    ("phase5", "predictor_beats_entropy"): {"seeds": Lever("phase5.seeds"), **EVALUATED},
    ("phase5", "entropy_beats_random"): {"seeds": Lever("phase5.seeds"), **EVALUATED},
}


DEFAULTS = "plan_defaults.json"  # in this package: the stated defaults, made by `stated_default`


@dataclass(frozen=True)
class StatedDefault:
    """A primary verdict as a reference run judged it, the lever values it was measured at, and
    where it comes from."""

    verdict: Verdict
    levers: dict[str, int | None]
    source: str

    def as_json(self) -> dict:
        verdict = self.verdict.model_dump(mode="json", exclude={"role"})
        return {"verdict": verdict, "levers": self.levers, "source": self.source}


def stated_default(verdict: Verdict, parameters: Parameters, source: str) -> StatedDefault:
    """A verdict of a finished run measured with `parameters`, as a stated default."""
    return StatedDefault(verdict, lever_values(parameters), source)


def load_defaults() -> dict[tuple[str, str], StatedDefault]:
    """The stated defaults of the primary verdicts, by (phase, criterion)."""
    entries = json.loads(resources.files("teachable.pipeline").joinpath(DEFAULTS).read_text())
    defaults = [
        StatedDefault(Verdict.model_validate(e["verdict"]), e["levers"], e["source"])
        for e in entries["defaults"]
    ]
    return {(d.verdict.phase, d.verdict.criterion): d for d in defaults}


def sizes_at(
    estimate: Estimate,
    levers: dict[str, Lever],
    now: dict[str, int | None],
    then: Parameters,
) -> tuple[dict[str, float], list[str]]:
    """The estimate's level sizes under `then`: each grown by its lever's value there over its
    value `now`; a level without a lever or a set value keeps its size, and a note says so."""
    sizes, notes = current_sizes(estimate), []
    for level, size in list(sizes.items()):
        lever = levers.get(level)
        before = None if lever is None else now.get(lever.key)
        after = None if lever is None else lever.value(then)
        if before and after:
            sizes[level] = size * after / before
        else:
            notes.append(f"{level} kept at {size:g}: no lever value to scale it by")
    return sizes, notes


def lever_values(parameters: Parameters) -> dict[str, int | None]:
    """Every lever's value under the parameters, by its key."""
    return {
        lever.key: lever.value(parameters)
        for levers in LEVERS.values()
        for lever in levers.values()
    }


def parameters_for(
    scale: float, levers: dict[str, Lever], now: dict[str, int | None], base: Parameters
) -> tuple[Parameters, dict[str, int]]:
    """`base` with the verdict's levers at `scale` times their value `now` (rounded up)."""
    distinct = {lever.key: lever for lever in levers.values() if now.get(lever.key)}
    parameters = base
    for key, lever in distinct.items():
        parameters = lever.set(parameters, math.ceil(now[key] * scale))
    return parameters, {
        lever.path: lever.count(parameters, lever.path) for lever in distinct.values()
    }


@dataclass(frozen=True)
class Planning:
    """What a plan is made with: the run's parameters (the pace of its compute), the
    parameters planned for, a target half-width, and a student size for the GPU model."""

    run: RunLayout
    parameters: Parameters
    planned: Parameters
    target: float | None = None
    size: float | None = None

    @cached_property
    def paces(self) -> dict[str, RecordedPhase | None]:
        """The run's recorded phases, read once for every compute of the plan."""
        return recorded_phases(self.run, unit_table(self.planned.student))

    def compute(self, parameters: Parameters) -> Compute:
        hours = cpu_seconds(parameters, self.parameters, self.paces) / 3600
        gpu = gpu_seconds(parameters, self.size)
        return Compute(
            cpu_hours=round(hours, 3), gpu_hours=None if gpu is None else round(gpu / 3600, 3)
        )


Choice = tuple[float, dict[str, int], dict[str, int], Compute]  # scale, sizes, parameters, compute


def cheapest(
    estimate: Estimate,
    wanted: float | None,
    levers: dict[str, Lever],
    now: dict[str, int | None],
    planning: Planning,
) -> Choice | None:
    """The cheapest way, in CPU hours, to reach `wanted`: each set of the estimate's levels
    grown together by the smallest factor that reaches it (items alone, seeds alone, both...);
    None where none does within 1000x."""
    choices = []
    for count in range(1, len(levers) + 1):
        for grown in itertools.combinations(levers, count):
            scale = needed_scale(estimate, wanted, DECISION_CONFIDENCE, grown)
            if scale is None:
                continue
            sizes = {
                level: math.ceil(size * scale) if level in grown else round(size)
                for level, size in current_sizes(estimate).items()
            }
            chosen = {level: levers[level] for level in grown}
            parameters, settings = parameters_for(scale, chosen, now, planning.planned)
            choices.append((scale, sizes, settings, planning.compute(parameters)))
    return min(choices, key=lambda choice: choice[3].cpu_hours, default=None)


def plan_verdict(
    key: tuple[str, str], verdict: Verdict, basis: str, now: dict, planning: Planning
) -> VerdictPlan:
    """One primary verdict's plan from its estimate, with lever values `now` as they were
    when it was measured."""
    levers, estimate = LEVERS[key], verdict.estimate
    planned, notes = sizes_at(estimate, levers, now, planning.planned)
    wanted = planning.target or gap_to_threshold(estimate, verdict.threshold)
    aim = (
        f"half-width {planning.target:g}"
        if planning.target
        else "the interval clear of the threshold if the estimate holds"
    )
    if wanted is None:
        notes.append(
            "the estimate sits on its threshold: no size decides it if it holds; give --target"
        )
    measured = {level: lever for level, lever in levers.items() if level in planned}
    notes += [
        f"{level}: one in this run, so its variance is not measured; the plan keeps it at one"
        for level in levers.keys() - measured.keys()
    ]
    choice = cheapest(estimate, wanted, measured, now, planning)
    scale, needed_sizes, needed_parameters, compute = choice or (None, {}, {}, None)
    if choice is None and wanted is not None:
        notes.append("no run up to 1000 times larger decides it")
    return VerdictPlan(
        phase=verdict.phase,
        criterion=verdict.criterion,
        side=verdict.side,
        threshold=verdict.threshold,
        basis=basis,
        today=estimate,
        half_today=predicted_half(estimate, {}, CONFIDENCE),
        sizes_today=current_sizes(estimate),
        sizes_planned=planned,
        half_planned=predicted_half(estimate, planned, CONFIDENCE),
        wanted_half=wanted,
        wanted=aim,
        scale=scale,
        sizes_needed=needed_sizes,
        parameters_needed=needed_parameters,
        compute_needed=compute,
        notes=notes,
    )


def unplannable(estimate: Estimate) -> str:
    """Why the run's estimate cannot be planned from, or "" when it can: no figure, no
    variance components (a run older than them), or an interval that carries no information
    (zero width, too few discordant pairs), whose variance is no guide."""
    if estimate.value is None or not estimate.known:
        return "no figure with an interval"
    if not estimate.components:
        return "no variance components"
    return uninformative(estimate)


def plannable(estimate: Estimate) -> bool:
    return not unplannable(estimate)


def make_plan(planning: Planning, planned_for: str) -> Plan:
    """Every primary verdict's plan: from the run's own where it judged it, else from the
    stated defaults; and the compute of the planned run."""
    judged = {(v.phase, v.criterion): v for v in Verdicts.load(planning.run.verdicts).verdicts}
    defaults = load_defaults()
    now = lever_values(planning.parameters)
    plans = []
    for key in PRIMARY_FAMILY:
        verdict = judged.get(key)
        if verdict is not None and plannable(verdict.estimate):
            plans.append(plan_verdict(key, verdict, "this run", now, planning))
            continue
        why = "not judged by this run" if verdict is None else unplannable(verdict.estimate)
        default = defaults[key]
        basis = f"stated default ({why}): {default.source}"
        plans.append(plan_verdict(key, default.verdict, basis, default.levers, planning))
    size = planning.size or student_size(planning.planned)
    return Plan(
        run=str(planning.run.folder),
        planned_for=planned_for,
        decision_confidence=round(DECISION_CONFIDENCE, 6),
        target_half_width=planning.target,
        compute_planned=planning.compute(planning.planned),
        cost_model=cost_model(size),
        cpu_basis="each phase's units at this run's recorded pace (the unit table's where it has "
        "none), scaled by each unit's work; the warm-up where this machine has not cached it",
        verdicts=plans,
    )


def _sizes(sizes: dict[str, float]) -> str:
    return " x ".join(f"{size:.0f} {level}" for level, size in sizes.items()) or "-"


def _half(value: float | None) -> str:
    return "n/a" if value is None else f"±{value:.3f}"


def plan_text(plan: Plan) -> str:
    """The plan as the terminal shows it: one block per primary verdict."""
    lines = [
        f"plan from {plan.run} for {plan.planned_for}",
        f"planned run: {plan.compute_planned.cpu_hours:.2f} CPU hours"
        + (
            ""
            if plan.compute_planned.gpu_hours is None
            else f", {plan.compute_planned.gpu_hours:.3f} GPU hours"
        ),
        f"decisions planned at {plan.decision_confidence:.4f} confidence (Holm's first step of "
        f"{len(PRIMARY_FAMILY)} primaries); intervals today and at the planned sizes at 95%",
        f"CPU: {plan.cpu_basis}",
        plan.cost_model,
        "",
    ]
    for v in plan.verdicts:
        lines += [
            f"{v.phase} {v.criterion} ({v.side} {v.threshold:g}) [{v.basis}]",
            f"  estimate: {v.today.text()}",
            f"  planned:  {_half(v.half_planned)} at {_sizes(v.sizes_planned)}",
        ]
        if v.scale is None:
            lines.append(f"  to reach {v.wanted}: not within 1000x")
        elif v.scale == 1:
            lines.append(f"  {v.wanted}: already at this run's sizes")
        else:
            compute = v.compute_needed
            gpu = "" if compute.gpu_hours is None else f", {compute.gpu_hours:.2f} GPU h"
            settings = ", ".join(f"{k}={n}" for k, n in v.parameters_needed.items())
            lines.append(
                f"  to reach {v.wanted}: x{v.scale:g}: {_sizes(v.sizes_needed)} ({settings}); "
                f"{compute.cpu_hours:.1f} CPU h{gpu}"
            )
        lines += [f"  note: {note}" for note in v.notes]
    return "\n".join(lines)


def plan_run(
    run: RunLayout,
    parameters: Parameters,
    planned: Parameters,
    planned_for: str,
    target: float | None = None,
    size: float | None = None,
) -> Plan:
    """Plan from `run` (with its `parameters`) for `planned`, write `plan.json` there and
    return it."""
    plan = make_plan(Planning(run, parameters, planned, target, size), planned_for)
    plan.save(run.plan)
    return plan
