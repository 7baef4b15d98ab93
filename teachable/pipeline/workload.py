"""The work a phase would do: its units, counted from the parameters and the run's files.

A phase's units are what its progress bars count: episodes, snapshots to label,
micro-trainings, matrix runs, models to evaluate, labels to buy, selection runs. Each kind is
one `Units`: how many the parameters plan, and how many the run holds on record from an
earlier run. A phase keeps the units it finds on record under the same key (its logs are
resumable), so what is left is the difference, unless the phase's parameters changed, which
changes the keys. Where a count depends on a file an earlier phase has not written yet (the
split, the quadrant counts, the trained runs), the parameters' cap stands in for it.

Reading only: nothing here creates or changes a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from teachable.parameters import Parameters
from teachable.records.layout import EvaluationLayout, RunLayout
from teachable.records.store import BadFile, read_json, read_jsonl
from teachable.records.training_summary import TrainingSummary
from teachable.vocabulary import QUADRANTS
from teachable.world.splits import Split

# the kinds of unit, each spelled once; `unit_times` keys its table by them
WARMUP = "warm-up of a new student"
STUDENT_EPISODES = "student episodes"
EXPERT_EPISODES = "expert episodes"
SNAPSHOTS_TO_LABEL = "snapshots to label"
TEST_SNAPSHOTS = "test snapshots to label"
RETEST_SNAPSHOTS = "snapshots to label again"
DOSE_TRAININGS = "dose trainings"
MICRO_TRAININGS = "micro-trainings"
MATRIX_RUNS = "matrix runs"
MODELS_TO_EVALUATE = "models to evaluate"
PREDICTOR_FITS = "predictor fits"
SELECTION_RUNS = "selection runs"
SELECTED_MODELS = "selected models to evaluate"


def labels_to_buy(method: str) -> str:
    """The kind of unit of a Phase 5 method that buys a label per candidate."""
    return f"{method} labels to buy"


@dataclass(frozen=True)
class Units:
    """One kind of unit of a phase: how many it plans, how many are on record from an earlier
    run, and how many teacher answers each asks (at most)."""

    kind: str
    planned: int
    on_record: int = 0
    teacher_answers: int = 0

    def left(self, kept: bool) -> int:
        """How many would run: those not on record when the phase keeps its records."""
        return max(self.planned - self.on_record, 0) if kept else self.planned


Workload = Callable[[Parameters, RunLayout | None], list[Units]]


def _rows(path: Path) -> list[dict]:
    """The rows of a JSONL log; none when it is missing or does not parse."""
    try:
        return read_jsonl(path)
    except BadFile:
        return []


def _part_sizes(run: RunLayout | None) -> dict[str, int]:
    """Snapshots per part of the run's split; empty before Phase 1 made it."""
    if run is None or not run.split.is_file():
        return {}
    try:
        return {part: sizes["snapshots"] for part, sizes in Split.load(run.split).counts().items()}
    except (BadFile, ValueError):
        return {}


def _part_size(parameters: Parameters, run: RunLayout | None, part: str) -> int:
    """Snapshots in a part of the split, or its share of Phase 0's snapshot cap before there
    is a split."""
    known = _part_sizes(run)
    if part in known:
        return known[part]
    shares = parameters.phase1.split
    share = {"test": shares.test_share, "pool": shares.pool_share}.get(
        part, 1 - shares.test_share - shares.pool_share
    )
    return round(parameters.phase0.max_snapshots * share)


def _capped(cap: int | None, size: int) -> int:
    return size if cap is None else min(cap, size)


def _quadrant_counts(run: RunLayout | None) -> dict[str, int] | None:
    """Labeled snapshots per quadrant as Phase 1 recorded them; None before it did."""
    if run is None or not run.phase1.record.is_file():
        return None
    try:
        counts = read_json(run.phase1.record).get("quadrant_counts")
    except BadFile:
        return None
    return counts if isinstance(counts, dict) else None


def _trained(summary: Path) -> int:
    """Runs a training summary holds as trained; none without a readable summary."""
    try:
        entries = TrainingSummary.entries_in(summary)
    except (BadFile, ValueError, ValidationError):
        return 0
    return sum(entry.status == "trained" for entry in entries.values())


def _evaluated(evaluation: EvaluationLayout) -> set[str]:
    """The models whose episodes an evaluation's log holds."""
    return {row["model"] for row in _rows(evaluation.episodes) if "model" in row}


def _warmup_needed(parameters: Parameters) -> bool:
    """Whether Phase 0 trains a new warmed-up student: none is given, the warm-up is on, and
    the model cache holds none under its key. Imported here: the warm-up module loads torch."""
    from teachable.models.student import cache_root
    from teachable.phases.phase0_warmup import warmup_key
    from teachable.records.layout import PreparedStudentLayout

    student, phase0 = parameters.student, parameters.phase0
    if student.model_path or not phase0.warmup.enabled:
        return False
    key = warmup_key(
        student, phase0.warmup, parameters.lora, parameters.env.levels, parameters.run.seed
    )
    return not PreparedStudentLayout(cache_root() / "students" / key).report.is_file()


def phase0_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """The warm-up when a new student is needed, experiment A's and B's episodes (a teacher
    model playing B answers at each step)."""
    phase0 = parameters.phase0
    return [
        Units(WARMUP, int(_warmup_needed(parameters))),
        Units(STUDENT_EPISODES, phase0.n_tasks),
        Units(EXPERT_EPISODES, phase0.expert.n_tasks, teacher_answers=phase0.expert.max_steps),
    ]


def phase1_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """The labeled part's snapshots (a teacher answer each), the test part's, and the
    reliability panel's second labels."""
    phase1 = parameters.phase1
    labeled = _capped(phase1.max_snapshots, _part_size(parameters, run, "labeled"))
    test = _capped(phase1.max_test_snapshots, _part_size(parameters, run, "test"))
    logs = (
        (run.phase1.labeled_jsonl, run.phase1.test_labels, run.phase1.reliability_log)
        if run
        else ()
    )
    done = [len(_rows(log)) for log in logs] or [0, 0, 0]
    return [
        Units(SNAPSHOTS_TO_LABEL, labeled, done[0], teacher_answers=1),
        Units(TEST_SNAPSHOTS, test, done[1]),
        Units(RETEST_SNAPSHOTS, min(phase1.reliability_panel, labeled), done[2]),
    ]


def phase1a_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """Every grid dose of every kind not pinned, in each of its formats, then each chosen
    dose's check at each check seed; a micro dose trains each calibration snapshot alone.
    Imported here: the calibration loads torch."""
    from teachable.models.dose_calibration import grid_doses
    from teachable.phases.phase1a_dose import trainees

    training = parameters.training
    kinds = trainees(
        parameters.phase1b, parameters.phase2, parameters.lora, training.calibration_snapshots
    )
    doses = len(grid_doses(training.grid))
    per_dose = {kind.kind: kind.size if kind.kind == "micro" else 1 for kind in kinds}
    planned = sum(
        len(kind.formats)
        * per_dose[kind.kind]
        * (len(training.check_seeds) + (kind.pinned is None) * doses)
        for kind in kinds
    )
    done = len(_rows(run.phase1a.log)) if run else 0
    return [Units(DOSE_TRAININGS, planned, min(done, planned))]


def phase1b_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """`n_per_quadrant` micro-trainings per quadrant, fewer where Phase 1 found fewer."""
    n = parameters.phase1b.n_per_quadrant
    counts = _quadrant_counts(run) or {}
    planned = sum(min(n, counts.get(quadrant, n)) for quadrant in QUADRANTS)
    done = len(_rows(run.phase1b.results_log)) if run else 0
    return [Units(MICRO_TRAININGS, planned, done)]


def matrix_runs(parameters: Parameters, run: RunLayout | None) -> int:
    """The runs Phase 2 trains: each quadrant holding `n_train` snapshots times the formats,
    the two baselines and the shuffled-target control (which needs two snapshots), per
    seed."""
    phase2 = parameters.phase2
    counts = _quadrant_counts(run)
    if counts is None:  # before Phase 1 counted the quadrants, every cell is planned
        return (len(QUADRANTS) * len(phase2.formats) + 3) * len(phase2.seeds)
    quadrants = sum(counts.get(quadrant, 0) >= phase2.n_train for quadrant in QUADRANTS)
    labeled = sum(counts.values())
    per_seed = quadrants * len(phase2.formats) + 1 + (labeled >= phase2.n_train) + (labeled >= 2)
    return per_seed * len(phase2.seeds)


def phase2_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    planned = matrix_runs(parameters, run)
    done = _trained(run.phase2.training_summary) if run else 0
    return [Units(MATRIX_RUNS, planned, min(done, planned))]


def phase3_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """The base and every run Phase 2 trains."""
    planned = 1 + matrix_runs(parameters, run)
    done = len(_evaluated(run.phase3)) if run else 0
    return [Units(MODELS_TO_EVALUATE, planned, min(done, planned))]


def phase4_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """One fit per fold, and the final fit on every labeled snapshot."""
    return [Units(PREDICTOR_FITS, parameters.phase4.folds + 1)]


def phase5_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """The labels each label-buying method buys for its candidates, a run per method and
    seed, and their evaluation with the base's. Imported here: the selection methods load
    torch."""
    from teachable.models.selection import selector

    phase5 = parameters.phase5
    candidates = _capped(phase5.candidates, _part_size(parameters, run, "pool"))
    layouts = {name: run.phase5.method(name) for name in phase5.methods} if run else {}
    buying = [
        Units(
            labels_to_buy(name),
            candidates,
            min(len(_rows(layouts[name].candidate_labels)), candidates) if run else 0,
            teacher_answers=selector(name).teacher_answers,
        )
        for name in phase5.methods
        if selector(name).buys_labels
    ]
    runs = len(phase5.methods) * len(phase5.seeds)
    trained = sum(_trained(method.training_summary) for method in layouts.values())
    evaluated = set().union(*(_evaluated(method.evaluation) for method in layouts.values()))
    return [
        *buying,
        Units(SELECTION_RUNS, runs, min(trained, runs)),
        Units(SELECTED_MODELS, runs + 1, min(len(evaluated), runs + 1)),
    ]


def artifacts_units(parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """None: the paper artifacts are drawn from the other phases' files in a few seconds."""
    return []


WORKLOADS: dict[str, Workload] = {
    "0": phase0_units,
    "1": phase1_units,
    "1a": phase1a_units,
    "1b": phase1b_units,
    "2": phase2_units,
    "3": phase3_units,
    "4": phase4_units,
    "5": phase5_units,
    "artifacts": artifacts_units,
}


def phase_units(phase: str, parameters: Parameters, run: RunLayout | None) -> list[Units]:
    """The units of the named phase with what `run` holds on record (nothing when None);
    kinds the parameters plan none of are left out."""
    return [units for units in WORKLOADS[phase](parameters, run) if units.planned > 0]


def units_left(phase: str, parameters: Parameters, parameters_changed: bool) -> dict | None:
    """How many units of each kind the phase would run now in the parameters' run folder;
    None when that is not known: its parameters changed and it holds units on record, which it
    keeps only where their key is unchanged."""
    units = phase_units(phase, parameters, parameters.layout)
    if parameters_changed and any(item.on_record for item in units):
        return None
    return {item.kind: item.left(kept=True) for item in units}
