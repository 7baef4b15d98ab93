"""The run layout: every artifact path of a run folder, named once.

`RunLayout(runs/<run>)` gives each phase's folder as a small layout of its own
(`run.phase1.labeled_jsonl`, `run.phase2.training_summary`, ...). A phase, the runner, the
checks, the paper artifacts and the notebooks take their paths from here and spell none
themselves. The folder layouts also stand alone where a phase writes elsewhere: the stepwise
`label` command takes any folder as a `Phase1Layout`, and each Phase 5 method is evaluated into
an `EvaluationLayout` of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FolderLayout:
    """A folder of a run; subclasses name its files as properties."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    def paths(self) -> Iterator[Path]:
        """Every fixed path this layout declares, its sub-layouts' paths included."""
        for name, _ in inspect.getmembers(type(self), lambda member: isinstance(member, property)):
            value = getattr(self, name)
            if isinstance(value, FolderLayout):
                yield value.folder
                yield from value.paths()
            else:
                yield value


@dataclass(frozen=True)
class PreparedStudentLayout(FolderLayout):
    """A prepared (warmed-up) student in the model cache: its checkpoint and report."""

    @property
    def report(self) -> Path:
        return self.folder / "warmup.json"


@dataclass(frozen=True)
class Phase0Layout(FolderLayout):
    @property
    def warmup(self) -> Path:
        """Which student the run uses, and the warm-up's measurements."""
        return self.folder / "warmup.json"

    @property
    def rollouts(self) -> Path:
        return self.folder / "rollouts.json"

    @property
    def failure_snapshots(self) -> Path:
        return self.folder / "failure_snapshots.json"

    @property
    def expert_snapshots(self) -> Path:
        return self.folder / "snapshots_expert.json"

    @property
    def expert_trajectories(self) -> Path:
        return self.folder / "expert_trajectories"

    def expert_trajectories_of(self, player: str) -> Path:
        """Experiment B's trajectories as played by `player` (`bot`, or the teacher model's
        name with any `/` as `_`)."""
        return self.expert_trajectories / f"all_trajectories_{player.replace('/', '_')}.json"

    @property
    def teacher_health(self) -> Path:
        """Experiment B played by a teacher model: the share of its steps that fell back."""
        return self.folder / "teacher_health.json"

    def snapshots(self, source: str) -> Path:
        """The snapshot file of an experiment: `failure` (A) or `expert` (B)."""
        return {"failure": self.failure_snapshots, "expert": self.expert_snapshots}[source]


@dataclass(frozen=True)
class Phase1Layout(FolderLayout):
    @property
    def labeled_jsonl(self) -> Path:
        """The append-only log: one row per labeled snapshot, as each group finishes."""
        return self.folder / "labeled_snapshots.jsonl"

    @property
    def labeled_json(self) -> Path:
        return self.folder / "labeled_snapshots.json"

    @property
    def record(self) -> Path:
        """The parameters the labels were made with; a change starts labeling afresh."""
        return self.folder / "labeling.json"

    @property
    def step_logs(self) -> Path:
        return self.folder / "steps"

    def step_log(self, step: str) -> Path:
        return self.step_logs / f"{step}.jsonl"

    @property
    def lock(self) -> Path:
        """Held by a `label` command writing into this folder on its own (`--output-dir`)."""
        return self.folder / "labeling.lock"

    @property
    def teacher_health(self) -> Path:
        """The share of invalid or failed teacher answers in the labels, and the first errors."""
        return self.folder / "teacher_health.json"

    @property
    def test_labels(self) -> Path:
        """The split's test snapshots with U and leverage (for their quadrant), one row each."""
        return self.folder / "test_snapshots.jsonl"

    @property
    def thresholds_auto(self) -> Path:
        return self.folder / "quadrant_thresholds_auto.json"

    @property
    def thresholds_chosen(self) -> Path:
        return self.folder / "quadrant_thresholds.json"

    @property
    def threshold_plots(self) -> Path:
        return self.folder / "threshold_plots"

    @property
    def quantiles(self) -> Path:
        return self.threshold_plots / "quantiles.json"

    @property
    def reliability_log(self) -> Path:
        """The append-only log of the reliability panel's second labels, one row per snapshot."""
        return self.folder / "reliability.jsonl"

    @property
    def reliability(self) -> Path:
        """The test-retest r of U, L_local and ELP_net over the reliability panel."""
        return self.folder / "reliability.json"

    @property
    def source_comparison(self) -> Path:
        """Failure (A) against expert (B) snapshots: mean labels and quadrant shares."""
        return self.folder / "source_comparison.json"


@dataclass(frozen=True)
class Phase1ALayout(FolderLayout):
    @property
    def dose(self) -> Path:
        """The dose-response curve, the chosen doses and their verdicts (the gate)."""
        return self.folder / "dose.json"

    @property
    def anchor_states(self) -> Path:
        """The anchor replay set every training after the warm-up is held at."""
        return self.folder / "anchor_states.jsonl"

    @property
    def probe_states(self) -> Path:
        """The probe set every adapter's drift and specificity are measured at."""
        return self.folder / "probe_states.jsonl"

    @property
    def log(self) -> Path:
        """Each calibration training's policy changes, appended as it ends (resume)."""
        return self.folder / "calibration.jsonl"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"


@dataclass(frozen=True)
class Phase1BLayout(FolderLayout):
    @property
    def results_log(self) -> Path:
        return self.folder / "micro_training.jsonl"

    @property
    def results(self) -> Path:
        return self.folder / "micro_training_results.json"

    @property
    def correlation(self) -> Path:
        """The gate's figures: Spearman rho of ELP_net with the micro-training's delta."""
        return self.folder / "cpt_correlation.json"


@dataclass(frozen=True)
class TrainingLayout(FolderLayout):
    """A folder of trained adapters (Phase 2, or one Phase 5 method) and their summary."""

    @property
    def training_summary(self) -> Path:
        return self.folder / "training_summary.json"

    def adapter(self, run_id: str) -> Path:
        return self.folder / run_id


@dataclass(frozen=True)
class EvaluationLayout(FolderLayout):
    """The evaluation suite's files: Phase 3's, and each Phase 5 method's."""

    @property
    def episodes(self) -> Path:
        return self.folder / "model_episodes.jsonl"

    @property
    def overall(self) -> Path:
        return self.folder / "overall_task_results.csv"

    @property
    def per_quadrant(self) -> Path:
        return self.folder / "per_quadrant_results.csv"

    @property
    def transfer(self) -> Path:
        return self.folder / "transfer_matrix.csv"

    @property
    def transfer_summary(self) -> Path:
        return self.folder / "transfer_summary.json"

    @property
    def retention(self) -> Path:
        return self.folder / "retention_results.csv"

    @property
    def stuckness(self) -> Path:
        return self.folder / "stuckness_results.csv"

    @property
    def record(self) -> Path:
        """What was evaluated, with which counts."""
        return self.folder / "evaluation.json"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"

    def csvs(self) -> tuple[Path, ...]:
        """The five tables of the plan's Phase 3."""
        return (self.overall, self.per_quadrant, self.transfer, self.retention, self.stuckness)


@dataclass(frozen=True)
class Phase4Layout(FolderLayout):
    @property
    def training_result(self) -> Path:
        return self.folder / "training_result.json"

    @property
    def predictor_model(self) -> Path:
        """The saved predictor; `Predictor.load` takes it."""
        return self.folder / "predictor" / "model.pt"

    @property
    def test_predictions(self) -> Path:
        return self.folder / "test_predictions.csv"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"


@dataclass(frozen=True)
class MethodLayout(TrainingLayout):
    """One Phase 5 method: its adapters, summary and evaluation, and the labels it bought."""

    @property
    def candidate_labels(self) -> Path:
        """The labels a method that ranks by a measured label bought, one row per candidate."""
        return self.folder / "candidate_labels.jsonl"

    @property
    def evaluation(self) -> EvaluationLayout:
        return EvaluationLayout(self.folder / "eval")


@dataclass(frozen=True)
class Phase5Layout(FolderLayout):
    @property
    def summary(self) -> Path:
        return self.folder / "selection_summary.json"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"

    def method(self, name: str) -> MethodLayout:
        return MethodLayout(self.folder / name)


@dataclass(frozen=True)
class RunLayout(FolderLayout):
    """A whole run folder, `runs/<run>/`."""

    @property
    def phase0(self) -> Phase0Layout:
        return Phase0Layout(self.folder / "phase0")

    @property
    def phase1(self) -> Phase1Layout:
        return Phase1Layout(self.folder / "phase1")

    @property
    def phase1a(self) -> Phase1ALayout:
        return Phase1ALayout(self.folder / "phase1a")

    @property
    def phase1b(self) -> Phase1BLayout:
        return Phase1BLayout(self.folder / "phase1b")

    @property
    def phase2(self) -> TrainingLayout:
        return TrainingLayout(self.folder / "phase2")

    @property
    def phase3(self) -> EvaluationLayout:
        return EvaluationLayout(self.folder / "phase3" / "v8")

    @property
    def phase4(self) -> Phase4Layout:
        return Phase4Layout(self.folder / "phase4")

    @property
    def phase5(self) -> Phase5Layout:
        return Phase5Layout(self.folder / "phase5" / "selection")

    @property
    def split(self) -> Path:
        """The run's one split of the Phase 0 snapshots by task (labeled, pool, test)."""
        return self.folder / "split.json"

    @property
    def teacher_cache(self) -> Path:
        return self.folder / "teacher_cache"

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    @property
    def tables(self) -> Path:
        return self.folder / "tables"

    @property
    def artifacts(self) -> Path:
        """What the paper-artifacts phase built and skipped, and why."""
        return self.folder / "artifacts.json"

    @property
    def verdicts(self) -> Path:
        """Every criterion of the plan judged so far: figure, interval, n and outcome."""
        return self.folder / "verdicts.json"

    @property
    def plan(self) -> Path:
        """The planner's last plan from this run: each primary verdict at other sizes."""
        return self.folder / "plan.json"

    @property
    def provenance(self) -> Path:
        """The last invocation of `run` on this folder: parameters, code, machine, phases."""
        return self.folder / "provenance.json"

    @property
    def history(self) -> Path:
        """Every invocation of `run` on this folder, one line each, appended as it ends."""
        return self.folder / "history.jsonl"

    @property
    def lock(self) -> Path:
        """Held by the run working in this folder: its pid, host and command; empty when free."""
        return self.folder / "run.lock"

    @property
    def reports(self) -> Path:
        return self.folder / "reports"

    def report(self, notebook: str) -> Path:
        return self.reports / notebook

    @property
    def reports_index(self) -> Path:
        """The run's front page: every phase's report, every verdict, the provenance."""
        return self.reports / "index.html"

    @property
    def stamps(self) -> Path:
        return self.folder / "stamps"

    def stamp(self, phase: str) -> Path:
        return self.stamps / f"{phase}.json"

    def all_paths(self) -> Iterator[Path]:
        """Every fixed path of a run, with one Phase 5 method's and a prepared student's."""
        yield from self.paths()
        yield from self.phase5.method("method").paths()
        yield from PreparedStudentLayout(self.folder).paths()
