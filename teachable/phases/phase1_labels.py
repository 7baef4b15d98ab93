"""Phase 1 labels: how unsure the student is at a snapshot (U), how much forcing the expert's
action changes the outcome (leverage), and how much a teacher's patch in the prompt changes it
(the contextual patch test, CPT).

Phase 1 first splits the Phase 0 snapshots by task, once for the run (`world.splits`,
`split.json`): it labels the `labeled` part fully, gives the `test` part U and leverage only
(their quadrant, for Phase 3), and leaves the `pool` unlabeled for Phase 5.

Every rollout restores the snapshot and lets the student act, sampling at `phase1.temperature`,
for at most `phase1.max_steps` steps; success is the level's reward > 0. The rollouts of a group
of snapshots (every condition, every repetition) go through one `run_episodes` call, so the
scorer always sees large batches.

Common random numbers: rollout i's random stream is seeded from (run seed, snapshot id, stream
family, i), never from the condition, so rollout i of `base`, `forced`, `placebo` and every
format draws the same uniforms and the conditions differ only by their intervention. `base` (the
student on its own) is the baseline of both leverage and CPT; `L_local`, `ELP` and `ELP_net` are
means of paired differences, stored with their standard errors. A label does not depend on the
group, the order or a resumption. Batched scoring moves log-probabilities by ~1e-6 with the
make-up of a batch, which can flip a sampled action only with a probability of that order.

Label reliability: `phase1.reliability_panel` labeled snapshots (a seeded draw) are labeled a
second time on the independent `retest` streams (`reliability.jsonl`, resumable), and the
test-retest correlation of U, L_local and ELP_net goes to `reliability.json`.

Rows go to `labeled_snapshots.jsonl` as each group completes; a rerun skips finished ids, and
a change of any parameter that shapes the labels (recorded in `labeling.json`) starts afresh.
A finished row whose teacher answer fell back to the bot is asked again on the next run; where
the new answer changes a patch, its CPT is measured again (U and leverage do not depend on the
teacher). The teacher's answers are held to `teacher.max_invalid_fraction` (`TeacherMonitor`),
and their health is written to `teacher_health.json`.

Each stepwise `label` command refuses rows that lack a field it needs, naming the row and the
field, before it writes anything.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from teachable.measure.intervals import RESAMPLES, mean_and_se
from teachable.measure.reliability import test_retest
from teachable.models.rollouts import Episode, EpisodeSpec, run_episodes
from teachable.models.student import Student, normalized_entropy
from teachable.models.supervision import PLACEBO, patch_text
from teachable.models.teachers import Teacher, TeacherMonitor, TeacherRequest
from teachable.models.workers import Workers, WorkUnit, workers_of
from teachable.parameters import Phase1Parameters, StudentParameters, TeacherParameters
from teachable.records.estimate import Estimate
from teachable.records.labeled import (
    CPT,
    LabeledSnapshot,
    Leverage,
    TeacherAnswer,
    TeacherHealth,
    _check_distinct,
    assign_quadrants,
    save_labeled,
    save_teacher_health,
)
from teachable.records.layout import Phase0Layout, Phase1Layout
from teachable.records.quadrants import (
    Thresholds,
    auto_thresholds,
    quadrant_counts,
    save_thresholds,
    small_quadrants,
)
from teachable.records.snapshot import Snapshot
from teachable.records.store import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from teachable.vocabulary import FORMATS, Quadrant, UMethod
from teachable.world.replay import load_replayed_snapshots
from teachable.world.splits import Split, split_snapshots
from teachable.world.text_world import expert_trajectory

Step = Literal["hints", "uncertainty", "leverage", "cpt"]


STEPS: tuple[Step, ...] = ("hints", "uncertainty", "leverage", "cpt")


CPT_CONDITIONS = ("base", "placebo", *FORMATS)


def uncertainty(probs: np.ndarray, method: UMethod = "entropy") -> np.ndarray:
    """U per row, 0 for a one-hot and 1 for a uniform distribution: the normalized entropy
    (`entropy`), one minus the gap between the two likeliest actions (`margin`), or one minus
    the top probability, scaled by k / (k - 1) (`top1`)."""
    probs = np.asarray(probs, dtype=float)
    k = probs.shape[-1]
    if method == "entropy":
        return normalized_entropy(probs)
    ordered = np.sort(probs, axis=-1)
    if method == "margin":
        values = 1.0 - (ordered[..., -1] - ordered[..., -2])
    elif method == "top1":
        values = (1.0 - ordered[..., -1]) * k / (k - 1)
    else:
        raise ValueError(f"unknown U_method {method!r}; known: entropy, margin, top1")
    return np.clip(values, 0.0, 1.0)


def snapshot_uncertainty(snapshot: Snapshot, method: UMethod) -> float:
    """U of the student's distribution recorded at the snapshot, over its valid actions.

    The recorded distribution is the one the student acted from; taking it, rather than
    scoring the state again, keeps U exact whatever batch a relabeling would score it in."""
    probs = np.array([snapshot.student_distribution[a] for a in snapshot.valid_actions])
    return round(float(uncertainty(probs, method)), 6)


def stable_int(text: str) -> int:
    """A 64-bit integer from `text`, the same on every machine and run (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


LABELS = "labels"  # the stream family of the labels


RETEST = "retest"  # the stream family of the reliability panel's second labeling


STREAMS = (
    "paired: rollout i of every condition of a snapshot shares the stream (run seed, snapshot, "
    "family, i); inverse-CDF sampling; base serves leverage and CPT"
)


def rollout_seed(run_seed: int, snapshot_id: str, index: int, family: str) -> tuple[int, ...]:
    """The seed of one rollout's random stream: common to rollout `index` of every condition
    at the snapshot, so conditions differ by their intervention alone; `family` keeps
    independent measurements (the labels, their retest, Phase 1B's validation) apart."""
    return (run_seed, stable_int(snapshot_id), stable_int(family), index)


@dataclass(frozen=True)
class RolloutCondition:
    """`n` rollouts from one snapshot, all started the same way: plain, with a patch in the
    first prompt, or with a forced first action."""

    snapshot: Snapshot
    name: str
    n: int
    patch: str | None = None
    forced_action: str | None = None

    def specs(self, run_seed: int, family: str) -> list[EpisodeSpec]:
        return [
            EpisodeSpec(
                self.snapshot.state,
                rollout_seed(run_seed, self.snapshot.id, index, family),
                self.patch,
                self.forced_action,
            )
            for index in range(self.n)
        ]


def rollout_plan(
    snapshot: Snapshot,
    answer: TeacherAnswer | None,
    phase1: Phase1Parameters,
    leverage: bool,
    cpt: bool,
) -> list[RolloutCondition]:
    """The snapshot's conditions: `base` (the student on its own, the baseline of both leverage
    and CPT, with as many rollouts as either needs), `forced` (the expert's first action) for
    leverage, and the placebo and each format's patch for CPT."""
    if cpt and answer is None:
        raise ValueError(f"snapshot {snapshot.id}: CPT needs the teacher's answer")
    n_base = max(phase1.n_rollouts if leverage else 0, phase1.n_per_condition if cpt else 0)
    plan = [RolloutCondition(snapshot, "base", n_base)]
    if leverage:
        plan.append(
            RolloutCondition(
                snapshot, "forced", phase1.n_rollouts, forced_action=snapshot.expert_action
            )
        )
    if cpt:
        n = phase1.n_per_condition
        plan.append(RolloutCondition(snapshot, "placebo", n, patch=PLACEBO))
        plan += [RolloutCondition(snapshot, f, n, patch=patch_text(f, answer)) for f in FORMATS]
    return plan


def run_conditions(
    student: Student,
    conditions: Sequence[RolloutCondition],
    phase1: Phase1Parameters,
    seed: int,
    family: str = LABELS,
    progress: bool = False,
    share_scores: bool = True,
) -> dict[tuple[str, str], list[Episode]]:
    """The episodes of each (snapshot id, condition), every rollout in one `run_episodes`
    call (`share_scores=False`: every prompt scored on its own, the reference)."""
    specs = [spec for condition in conditions for spec in condition.specs(seed, family)]
    episodes = run_episodes(
        student,
        specs,
        phase1.max_steps,
        phase1.temperature,
        student.params.history,
        progress=progress,
        share_scores=share_scores,
    )
    by_condition, start = {}, 0
    for condition in conditions:
        by_condition[(condition.snapshot.id, condition.name)] = episodes[
            start : start + condition.n
        ]
        start += condition.n
    return by_condition


def outcomes(episodes: Sequence[Episode]) -> np.ndarray:
    """Success (1) or not (0) of each rollout, in stream order."""
    return np.array([float(episode.success) for episode in episodes])


def paired_difference(treated: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of `treated[i] - baseline[i]` over the streams both have."""
    n = min(len(treated), len(baseline))
    mean, se = mean_and_se(treated[:n] - baseline[:n])
    return round(mean, 6), round(se, 6)


def rate(successes: np.ndarray) -> float:
    return round(float(successes.mean()), 6)


def expert_reach(snapshot: Snapshot, max_steps: int) -> float:
    """1.0 when the bot still finishes the task from the snapshot within `max_steps`, else 0.0."""
    return float(expert_trajectory(snapshot.state, max_steps)[1])


def leverage_from_outcomes(
    base: np.ndarray, forced: np.ndarray, l_upper: float | None = None
) -> Leverage:
    """`L_local` as the mean of paired differences forced_i - base_i over the forced rollouts,
    with its standard error; `p_student` is the base rate over the same streams."""
    n = len(forced)
    l_local, se = paired_difference(forced, base)
    return Leverage(
        L_local=l_local,
        se=se,
        p_student=rate(base[:n]),
        p_forced=rate(forced),
        n=n,
        L_upper=l_upper,
    )


def cpt_from_outcomes(by_condition: dict[str, np.ndarray]) -> CPT:
    """ELP per format (paired with base) and the best format over the placebo (paired with
    it; the first of demo, hint, contrast on a tie), each with its standard error. Rates are
    over the `n_per_condition` streams every condition has."""
    missing = [c for c in CPT_CONDITIONS if c not in by_condition]
    if missing:
        raise ValueError(f"CPT outcomes lack condition(s) {missing}")
    n = len(by_condition["placebo"])
    elp = {f: paired_difference(by_condition[f], by_condition["base"]) for f in FORMATS}
    net = {f: paired_difference(by_condition[f], by_condition["placebo"]) for f in FORMATS}
    route = max(FORMATS, key=lambda f: net[f][0])
    return CPT(
        p={c: rate(by_condition[c][:n]) for c in CPT_CONDITIONS},
        ELP={f: mean for f, (mean, _) in elp.items()},
        ELP_se={f: se for f, (_, se) in elp.items()},
        ELP_net=net[route][0],
        ELP_net_se=net[route][1],
        route_net=route,
        n_per_condition=n,
    )


def teacher_request(snapshot: Snapshot) -> TeacherRequest:
    """The teacher's question about a snapshot, with what the student did there."""
    return TeacherRequest(
        snapshot.state,
        snapshot.mission,
        snapshot.observation,
        tuple(snapshot.valid_actions),
        snapshot.student_action,
    )


@dataclass(frozen=True)
class Measured:
    """What one batch of rollouts measured for one snapshot."""

    leverage: Leverage | None
    cpt: CPT | None


def measured_from(
    snapshots: Sequence[Snapshot],
    episodes: dict[tuple[str, str], list[Episode]],
    phase1: Phase1Parameters,
    leverage: bool,
    cpt: bool,
) -> list[Measured]:
    """Leverage and/or CPT of each snapshot from its conditions' episodes."""
    measured = []
    for snapshot in snapshots:
        result = {name: outcomes(runs) for (i, name), runs in episodes.items() if i == snapshot.id}
        lever = None
        if leverage:
            upper = expert_reach(snapshot, phase1.max_steps) if phase1.L_upper else None
            lever = leverage_from_outcomes(result["base"], result["forced"], upper)
        patch = cpt_from_outcomes(result) if cpt else None
        measured.append(Measured(lever, patch))
    return measured


def measure(
    student: Student,
    snapshots: Sequence[Snapshot],
    answers: Sequence[TeacherAnswer | None],
    phase1: Phase1Parameters,
    seed: int,
    *,
    leverage: bool = True,
    cpt: bool = True,
    progress: bool = False,
    family: str = LABELS,
    share_scores: bool = True,
) -> list[Measured]:
    """Leverage and/or CPT for each snapshot, from one batched run of all their rollouts on
    the streams of `family` (`share_scores=False`: every prompt scored itself, the reference)."""
    conditions = [
        condition
        for snapshot, answer in zip(snapshots, answers, strict=True)
        for condition in rollout_plan(snapshot, answer, phase1, leverage, cpt)
    ]
    episodes = run_conditions(student, conditions, phase1, seed, family, progress, share_scores)
    return measured_from(snapshots, episodes, phase1, leverage, cpt)


@dataclass(frozen=True)
class Measurement:
    """A unit of Phase 1: leverage and/or CPT of a group of snapshots, with the teacher's
    answers (None where CPT is not measured), on the streams of `family`."""

    snapshots: tuple[Snapshot, ...]
    answers: tuple[TeacherAnswer | None, ...]
    phase1: Phase1Parameters
    seed: int
    leverage: bool
    cpt: bool
    family: str = LABELS

    def unit(self) -> WorkUnit:
        first, more = self.snapshots[0].id, len(self.snapshots) - 1
        return WorkUnit(f"{self.family} of {first}" + (f" and {more} more" if more else ""), self)


def measure_unit(student: Student, measurement: Measurement) -> list[Measured]:
    """The work of a Phase 1 unit: one batched rollout run for its snapshots."""
    m = measurement
    return measure(
        student,
        m.snapshots,
        m.answers,
        m.phase1,
        m.seed,
        leverage=m.leverage,
        cpt=m.cpt,
        family=m.family,
    )


def run_measurements(
    workers: Workers, measurements: Iterator[Measurement], desc: str, total: int, progress: bool
) -> Iterator[tuple[Measurement, list[Measured]]]:
    """Each measurement's results as its unit ends (in the order units end)."""
    units = (measurement.unit() for measurement in measurements)
    for unit, measured in workers.map(measure_unit, units, desc, total, progress):
        yield unit.payload, measured


def labeling_measurements(
    teacher: Teacher,
    pending: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    monitor: TeacherMonitor | None,
) -> Iterator[Measurement]:
    """The labeling units of `pending`, `phase1.batch_snapshots` at a time; each group's
    teacher answers (counted by `monitor`) are asked for when its unit is about to start."""
    for group in in_groups(pending, phase1.batch_snapshots):
        answers = teacher.advise([teacher_request(s) for s in group], monitor=monitor)
        yield Measurement(
            tuple(group),
            tuple(answers),
            phase1,
            seed,
            leverage=not phase1.skip_leverage,
            cpt=not phase1.skip_cpt,
        )


def labeled_rows(measurement: Measurement, measured: Sequence[Measured]) -> list[LabeledSnapshot]:
    """Every label of a labeling unit's snapshots: U, and the leverage and CPT it measured."""
    phase1 = measurement.phase1
    return [
        LabeledSnapshot.of(snapshot).model_copy(
            update={
                "U": snapshot_uncertainty(snapshot, phase1.U_method),
                "U_method": phase1.U_method,
                "leverage": result.leverage,
                "cpt": result.cpt,
                "teacher": answer,
                "quadrant": None,
            }
        )
        for snapshot, answer, result in zip(
            measurement.snapshots, measurement.answers, measured, strict=True
        )
    ]


def same_patches(old: TeacherAnswer | None, new: TeacherAnswer) -> bool:
    """Whether two answers put the same text into every CPT patch (then CPT is unchanged)."""
    return old is not None and all(
        patch_text(format, old) == patch_text(format, new) for format in FORMATS
    )


def reask_group(
    workers: Workers,
    teacher: Teacher,
    rows: Sequence[LabeledSnapshot],
    phase1: Phase1Parameters,
    seed: int,
    progress: bool = False,
    monitor: TeacherMonitor | None = None,
) -> tuple[list[LabeledSnapshot], int]:
    """Finished rows whose teacher answer fell back, asked again: each gets the new answer,
    and a new CPT (unless skipped) where the answer changes a patch. Returns the rows and how
    many answers changed."""
    answers = teacher.advise([teacher_request(row) for row in rows], monitor=monitor)
    changed = [
        (row, answer)
        for row, answer in zip(rows, answers, strict=True)
        if not same_patches(row.teacher, answer)
    ]
    cpt_of = {}
    if changed and not phase1.skip_cpt:
        snapshots, new_answers = zip(*changed, strict=True)
        remeasure = Measurement(snapshots, new_answers, phase1, seed, leverage=False, cpt=True)
        for _, measured in run_measurements(workers, iter([remeasure]), "CPT again", 1, progress):
            cpt_of = {row.id: m.cpt for row, m in zip(snapshots, measured, strict=True)}
    updated = [
        row.model_copy(update={"teacher": answer, "cpt": cpt_of.get(row.id, row.cpt)})
        for row, answer in zip(rows, answers, strict=True)
    ]
    return updated, len(changed)


class MissingField(ValueError):
    """A row lacks a field that a labeling step needs; the message names the row and field."""


NEEDED_BY = {"leverage": "leverage", "U": "uncertainty", "teacher": "hints"}


def missing_fields(row: LabeledSnapshot, step: str, phase1: Phase1Parameters) -> list[str]:
    """The fields `row` lacks that the labeling step `step` needs."""
    if step == "uncertainty":
        return [
            f"student_distribution.{action}"
            for action in row.valid_actions
            if action not in row.student_distribution
        ]
    if step == "cpt":
        return [] if row.teacher is not None else ["teacher"]
    if step in ("quadrants", "plots"):
        needed = {"U": row.U}
        if not phase1.skip_leverage:
            needed["leverage"] = row.leverage
        return [name for name, value in needed.items() if value is None]
    return []


def require_fields(
    rows: Sequence[LabeledSnapshot], step: str, phase1: Phase1Parameters, source: object = ""
) -> None:
    """Refuse, before any work, rows that lack a field `step` needs: `MissingField` names the
    first such row, its field, how many rows lack one, and the step that makes it."""
    lacking = [(row.id, field) for row in rows for field in missing_fields(row, step, phase1)]
    if not lacking:
        return
    row_id, field = lacking[0]
    maker = NEEDED_BY.get(field)
    remedy = f"; run `label {maker}` first" if maker else ""
    where = f"{source}: " if source else ""
    raise MissingField(
        f"{where}row {row_id} lacks the field {field}, which `label {step}` needs "
        f"({len({row for row, _ in lacking})} of {len(rows)} rows lack a needed field){remedy}"
    )


def thresholds_from_parameters(
    rows: Sequence[LabeledSnapshot], phase1: Phase1Parameters
) -> Thresholds:
    """The automatic thresholds, or the fixed ones when the parameters say so."""
    if phase1.thresholds == "fixed":
        return Thresholds(U=phase1.U_threshold, L=phase1.L_threshold, source="parameters")
    return automatic_thresholds(rows, phase1)


def automatic_thresholds(rows: Sequence[LabeledSnapshot], phase1: Phase1Parameters) -> Thresholds:
    u_values = [row.U for row in rows if row.U is not None]
    l_values = [row.L for row in rows if row.L is not None]
    return auto_thresholds(u_values, l_values, phase1.U_quantile, phase1.L_quantile)


@dataclass
class QuadrantAssignment:
    rows: list[LabeledSnapshot]
    thresholds: Thresholds
    counts: dict[Quadrant, int]
    warnings: list[str]


def place_in_quadrants(
    rows: Sequence[LabeledSnapshot],
    out: Phase1Layout,
    phase1: Phase1Parameters,
    chosen: Thresholds | None = None,
) -> QuadrantAssignment:
    """Assign quadrants and save the result: `quadrant_thresholds_auto.json` always, the
    chosen thresholds (`chosen`, or fixed parameters) as `quadrant_thresholds.json`, and the
    rows with their quadrants in both labeled files. Small quadrants are warned about. Rows
    without U (or without leverage, unless it is skipped) are refused before anything is
    written: they would get no quadrant and move the automatic cut."""
    require_fields(rows, "quadrants", phase1)
    auto = automatic_thresholds(rows, phase1)
    save_thresholds(out.thresholds_auto, auto)
    thresholds = chosen or thresholds_from_parameters(rows, phase1)
    if thresholds.source != "auto":
        save_thresholds(out.thresholds_chosen, thresholds)
    elif out.thresholds_chosen.is_file():
        warnings.warn(
            f"{out.thresholds_chosen} (chosen thresholds) exists: later phases use it, not "
            "the automatic thresholds applied here",
            stacklevel=2,
        )
    if thresholds.L is None:
        assigned = [row.model_copy(update={"quadrant": None}) for row in rows]
        counts = quadrant_counts(())
        problems = ["leverage was not measured: no quadrants assigned"]
    else:
        assigned = assign_quadrants(rows, thresholds.U, thresholds.L)
        counts = quadrant_counts(row.quadrant for row in assigned)
        problems = small_quadrants(counts, phase1.min_per_quadrant)
    save_labeled(out, assigned)
    return QuadrantAssignment(assigned, thresholds, counts, problems)


def phase0_snapshots(sources: Sequence[str], phase0: Phase0Layout) -> list[Snapshot]:
    """The Phase 0 snapshots of the named experiments, in file order, each replayed."""
    snapshots = []
    for source in sources:
        path = phase0.snapshots(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run phase 0 first")
        snapshots += load_replayed_snapshots(path)
    _check_distinct(snapshots, phase0.folder)
    return snapshots


def sources_of(phase1: Phase1Parameters) -> list[str]:
    """The Phase 0 experiments whose snapshots the run uses: `failure`, `expert` or both."""
    return ["failure", "expert"] if phase1.snapshots == "both" else [phase1.snapshots]


def seeded_draw(snapshots: Sequence[Snapshot], cap: int | None, seed: tuple) -> list[Snapshot]:
    """At most `cap` of the snapshots (all when null), a seeded draw that keeps their order."""
    if cap is None or len(snapshots) <= cap:
        return list(snapshots)
    keep = np.random.default_rng(seed).choice(len(snapshots), cap, replace=False)
    return [snapshots[i] for i in sorted(keep)]


@dataclass(frozen=True)
class SnapshotsToLabel:
    """The run's split, and the snapshots Phase 1 labels: of the labeled part (every label)
    and of the test part (U and leverage, for their quadrant)."""

    split: Split
    labeled: list[Snapshot]
    test: list[Snapshot]


def phase1_snapshots(
    phase1: Phase1Parameters, seed: int, phase0: Phase0Layout, split_path: Path
) -> SnapshotsToLabel:
    """Split the Phase 0 snapshots `phase1.snapshots` names by task, once for the run (saved
    at `split_path`; the same inputs always give the same split), and pick what Phase 1
    labels: at most `phase1.max_snapshots` of the labeled part and `phase1.max_test_snapshots`
    of the test part (seeded draws that keep file order). The pool stays unlabeled."""
    snapshots = phase0_snapshots(sources_of(phase1), phase0)
    shares = phase1.split
    split = split_snapshots(
        snapshots, shares.test_share, shares.pool_share, seed, sources_of(phase1)
    )
    split.save(split_path)
    draws = {part: (seed, stable_int(f"{part} snapshots to label")) for part in ("labeled", "test")}
    return SnapshotsToLabel(
        split=split,
        labeled=seeded_draw(
            split.rows("labeled", snapshots), phase1.max_snapshots, draws["labeled"]
        ),
        test=seeded_draw(split.rows("test", snapshots), phase1.max_test_snapshots, draws["test"]),
    )


def label_test_snapshots(
    snapshots: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    student: Student | Workers,
    out: Phase1Layout,
    progress: bool = True,
) -> list[LabeledSnapshot]:
    """The split's test snapshots with U and leverage (on the same streams as the labels), so
    that Phase 3 can place each in a quadrant; no teacher and no CPT: they are played from,
    never trained on or selected. Resumable: each row goes to `test_snapshots.jsonl` as its
    group completes, and the log is rewritten with exactly `snapshots` at the end."""
    done = {row["id"]: LabeledSnapshot.model_validate(row) for row in read_jsonl(out.test_labels)}
    pending = [snapshot for snapshot in snapshots if snapshot.id not in done]
    groups = [tuple(group) for group in in_groups(pending, phase1.batch_snapshots)]
    measurements = (
        Measurement(group, (None,) * len(group), phase1, seed, leverage=True, cpt=False)
        for group in groups
    )
    if phase1.skip_leverage:
        results = ((m, [Measured(None, None)] * len(m.snapshots)) for m in measurements)
    else:
        workers = workers_of(student)
        results = run_measurements(workers, measurements, "test labels", len(groups), progress)
    for measurement, measured in results:
        for snapshot, result in zip(measurement.snapshots, measured, strict=True):
            row = LabeledSnapshot.of(snapshot).model_copy(
                update={
                    "U": snapshot_uncertainty(snapshot, phase1.U_method),
                    "U_method": phase1.U_method,
                    "leverage": result.leverage,
                }
            )
            append_jsonl(out.test_labels, row.model_dump(mode="json"))
            done[row.id] = row
    rows = [done[snapshot.id] for snapshot in snapshots]
    write_jsonl(out.test_labels, [row.model_dump(mode="json") for row in rows])
    return rows


def labeling_parameters(
    phase1: Phase1Parameters, seed: int, student: StudentParameters, teacher: TeacherParameters
) -> dict:
    """Every parameter that shapes a label: a change means the labels must be made again.
    Batch sizes are left out on purpose: labels do not depend on them; `streams` names how
    rollouts draw their randomness, so labels drawn otherwise are made again."""
    return {
        "seed": seed,
        "streams": STREAMS,
        "student": student.model_dump(mode="json", exclude={"batch_size"}),
        "teacher": teacher.model_dump(
            mode="json", include={"backend", "model", "temperature", "max_tokens", "base_url"}
        ),
        "phase1": phase1.model_dump(
            mode="json",
            include={
                "n_rollouts",
                "n_per_condition",
                "max_steps",
                "temperature",
                "U_method",
                "L_upper",
                "skip_leverage",
                "skip_cpt",
            },
        ),
    }


def open_labeling(out: Phase1Layout, made_with: dict) -> list[str]:
    """Record what the labels in `out` are made with; labels made with other parameters
    are removed first (and said so), since a rerun would otherwise keep them."""
    path = out.record
    notes = []
    if path.is_file() and read_json(path).get("parameters") != made_with:
        notes.append(f"{out.folder}: the labeling parameters changed; labeling starts afresh")
        warnings.warn(notes[-1], stacklevel=2)
        made = (out.labeled_jsonl, out.labeled_json, out.test_labels)
        for labeled in (*made, out.reliability_log, out.reliability):
            labeled.unlink(missing_ok=True)
        shutil.rmtree(out.step_logs, ignore_errors=True)
    if not path.is_file() or notes:
        write_json(path, {"parameters": made_with})
    return notes


def is_complete(row: LabeledSnapshot, phase1: Phase1Parameters) -> bool:
    """Whether a row holds every label the parameters ask for."""
    return (
        row.teacher is not None
        and row.U is not None
        and (phase1.skip_leverage or row.leverage is not None)
        and (phase1.skip_cpt or row.cpt is not None)
    )


def finished_rows(out: Phase1Layout, phase1: Phase1Parameters) -> dict[str, LabeledSnapshot]:
    """Complete rows already in `labeled_snapshots.jsonl`, by id. Incomplete rows (left by
    the stepwise commands) are dropped from the log so that relabeling them adds no duplicate."""
    path = out.labeled_jsonl
    rows = [LabeledSnapshot.model_validate(row) for row in read_jsonl(path)]
    done = {row.id: row for row in rows if is_complete(row, phase1)}
    if len(done) < len(rows):
        write_jsonl(path, [row.model_dump(mode="json") for row in done.values()])
    return done


def in_groups(items: Sequence, size: int) -> list[Sequence]:
    """`items` in consecutive groups of `size` (the last may be smaller)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def reliability_panel(
    rows: Sequence[LabeledSnapshot], size: int, seed: int
) -> list[LabeledSnapshot]:
    """A seeded draw of `size` rows (all of them when fewer), in their order; of the same rows,
    a larger panel holds every smaller one, so growing it keeps the retests already made."""
    draw = np.random.default_rng((seed, stable_int("reliability panel")))
    picked = draw.permutation(len(rows))[:size]
    return [rows[i] for i in sorted(picked)]


def retest_panel(
    student: Student | Workers,
    panel: Sequence[LabeledSnapshot],
    phase1: Phase1Parameters,
    seed: int,
    out: Phase1Layout,
    progress: bool = False,
) -> list[LabeledSnapshot]:
    """The panel labeled a second time, on the `retest` streams with the same teacher answers,
    resumable: each row goes to `reliability.jsonl` as its group completes, and a logged row is
    kept unless its teacher answer has since changed a patch."""
    logged = {
        row["id"]: LabeledSnapshot.model_validate(row) for row in read_jsonl(out.reliability_log)
    }
    pending = [
        row
        for row in panel
        if row.id not in logged or not same_patches(logged[row.id].teacher, row.teacher)
    ]
    groups = [tuple(group) for group in in_groups(pending, phase1.batch_snapshots)]
    leverage, cpt = not phase1.skip_leverage, not phase1.skip_cpt
    measurements = (
        Measurement(group, tuple(row.teacher for row in group), phase1, seed, leverage, cpt, RETEST)
        for group in groups
    )
    workers = workers_of(student)
    for measurement, measured in run_measurements(
        workers, measurements, "retest", len(groups), progress
    ):
        for row, result in zip(measurement.snapshots, measured, strict=True):
            retest = row.model_copy(
                update={
                    "U": snapshot_uncertainty(row, phase1.U_method),
                    "leverage": result.leverage,
                    "cpt": result.cpt,
                    "quadrant": None,
                }
            )
            append_jsonl(out.reliability_log, retest.model_dump(mode="json"))
            logged[row.id] = retest
    return [logged[row.id] for row in panel]


RELIABLE_LABELS = {
    "U": lambda row: row.U,
    "L_local": lambda row: row.L,
    "ELP_net": lambda row: None if row.cpt is None else row.cpt.ELP_net,
}


U_BY_CONSTRUCTION = (
    "U is read from the distribution recorded at the snapshot, not from rollouts: its retest "
    "is the same number, so r = 1 by construction (wherever U varies over the panel)"
)


def label_reliability(
    first: Sequence[LabeledSnapshot],
    second: Sequence[LabeledSnapshot],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Test-retest r of U, L_local and ELP_net over the panel rows that carry the label in
    both labelings, each with its bootstrap interval and n."""
    estimates = {}
    for name, label in RELIABLE_LABELS.items():
        pairs = [
            (label(a), label(b))
            for a, b in zip(first, second, strict=True)
            if label(a) is not None and label(b) is not None
        ]
        x, y = [a for a, _ in pairs], [b for _, b in pairs]
        estimates[name] = test_retest(x, y, resamples, seed)
    return estimates


def save_reliability(
    out: Phase1Layout, panel: Sequence[LabeledSnapshot], estimates: dict[str, Estimate]
) -> None:
    write_json(
        out.reliability,
        {
            "panel": [row.id for row in panel],
            "stream_family": RETEST,
            "estimates": {name: e.model_dump(mode="json") for name, e in estimates.items()},
            "notes": {"U": U_BY_CONSTRUCTION},
        },
    )


def load_reliability(out: Phase1Layout) -> dict[str, Estimate]:
    """The test-retest r of each label (U, L_local, ELP_net) from `reliability.json`: the
    share of a label's variance that is not rollout noise, the ceiling of a predictor's R² on
    it. Empty when no panel was labeled (`phase1.reliability_panel` 0)."""
    if not out.reliability.is_file():
        return {}
    data = read_json(out.reliability)
    return {name: Estimate.model_validate(e) for name, e in data["estimates"].items()}


@dataclass
class LabelingReport:
    """What `label_snapshots` did: the rows, the quadrants and what to look at."""

    rows: list[LabeledSnapshot]
    thresholds: Thresholds
    counts: dict[Quadrant, int]
    newly_labeled: int
    seconds: float
    teacher_usage: dict
    teacher_health: TeacherHealth
    notes: list[str] = field(default_factory=list)
    asked_again: int = 0
    reliability: dict[str, Estimate] = field(default_factory=dict)


def label_snapshots(
    snapshots: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    student: Student | Workers,
    teacher: Teacher,
    out: Phase1Layout,
    progress: bool = True,
    resamples: int = RESAMPLES,
) -> LabelingReport:
    """All of Phase 1 labeling for `snapshots`, resumable, into `out`.

    Labels the snapshots not yet in `labeled_snapshots.jsonl`, `phase1.batch_snapshots` at a
    time: each group is a unit of `student`'s workers (the student itself runs them here), and
    its rows are appended as it ends (a kill loses the groups in flight). Then it assigns
    quadrants with the thresholds the parameters name and writes `labeled_snapshots.json`, the
    threshold files and `labeling.json`, and the teacher's health in `teacher_health.json`.
    Every rollout's stream derives from the run's `seed`. With `phase1.reliability_panel`, that
    many labeled rows are labeled again on the `retest` streams and `reliability.json` gets
    their test-retest r (`resamples` bootstrap resamples each).

    Finished rows whose teacher answer fell back to the bot are asked again first. When more
    than `teacher.max_invalid_fraction` of the answers the rows hold are invalid or failed,
    `TeacherOutage` stops the labeling as soon as that is certain; the rows finished until
    then stay in the log.
    """
    started = time.perf_counter()
    if not snapshots:
        raise ValueError("no snapshots to label")
    _check_distinct(snapshots, "snapshots to label")
    made_with = labeling_parameters(phase1, seed, student.params, teacher.params)
    notes = open_labeling(out, made_with)
    out.teacher_health.unlink(missing_ok=True)
    notes += [
        f"phase1.skip_{name} is set: {name} is null in every row"
        for name in ("leverage", "cpt")
        if getattr(phase1, f"skip_{name}")
    ]
    done = finished_rows(out, phase1)
    fell_back = [done[s.id] for s in snapshots if s.id in done and not done[s.id].teacher.valid]
    pending = [snapshot for snapshot in snapshots if snapshot.id not in done]
    monitor = TeacherMonitor(
        teacher, "phase 1", len(snapshots), teacher.params.max_invalid_fraction, progress
    )
    workers = workers_of(student)
    changed = 0
    for group in in_groups(fell_back, phase1.batch_snapshots):
        rows, different = reask_group(workers, teacher, group, phase1, seed, progress, monitor)
        done.update((row.id, row) for row in rows)
        write_jsonl(out.labeled_jsonl, [row.model_dump(mode="json") for row in done.values()])
        changed += different
    if fell_back:
        notes.append(
            f"{len(fell_back)} row(s) whose teacher answer had fallen back to the bot were asked "
            f"again; {changed} got a different answer"
            + ("" if phase1.skip_cpt else " and a new CPT")
        )
    measurements = labeling_measurements(teacher, pending, phase1, seed, monitor)
    groups = len(in_groups(pending, phase1.batch_snapshots))
    for measurement, measured in run_measurements(
        workers, measurements, "labeling", groups, progress
    ):
        for row in labeled_rows(measurement, measured):
            append_jsonl(out.labeled_jsonl, row.model_dump(mode="json"))
            done[row.id] = row
    health = monitor.finish()
    assignment = place_in_quadrants([done[s.id] for s in snapshots], out, phase1)
    save_teacher_health(out.teacher_health, health)
    reliability = {}
    if phase1.reliability_panel:
        panel = reliability_panel(assignment.rows, phase1.reliability_panel, seed)
        retest = retest_panel(workers, panel, phase1, seed, out, progress)
        reliability = label_reliability(panel, retest, resamples, seed)
        save_reliability(out, panel, reliability)
        if len(panel) < phase1.reliability_panel:
            notes.append(
                f"the reliability panel holds all {len(panel)} labeled snapshots, fewer than "
                f"phase1.reliability_panel={phase1.reliability_panel}"
            )
    else:
        out.reliability.unlink(missing_ok=True)
    report = LabelingReport(
        rows=assignment.rows,
        thresholds=assignment.thresholds,
        counts=assignment.counts,
        newly_labeled=len(pending),
        seconds=round(time.perf_counter() - started, 1),
        teacher_usage=teacher.usage(),
        teacher_health=health,
        notes=notes + assignment.warnings,
        asked_again=len(fell_back),
        reliability=reliability,
    )
    write_json(
        out.record,
        {
            "parameters": made_with,
            "snapshots": len(snapshots),
            "newly_labeled": report.newly_labeled,
            "seconds": report.seconds,
            "thresholds": report.thresholds.model_dump(mode="json"),
            "quadrant_counts": report.counts,
            "teacher_usage": report.teacher_usage,
            "notes": report.notes,
        },
    )
    return report


STEP_FIELDS: dict[Step, tuple[str, ...]] = {
    "hints": ("teacher",),
    "uncertainty": ("U", "U_method"),
    "leverage": ("leverage",),
    "cpt": ("cpt",),
}


def merged_rows(rows: Sequence[LabeledSnapshot], out: Phase1Layout) -> list[LabeledSnapshot]:
    """`rows` with every label the step logs of `out` hold for them."""
    found: dict[str, dict] = {}
    for step in STEPS:
        for entry in read_jsonl(out.step_log(step)):
            found.setdefault(entry["id"], {}).update(
                {name: entry[name] for name in STEP_FIELDS[step]}
            )
    return [
        LabeledSnapshot.model_validate({**row.model_dump(mode="json"), **found.get(row.id, {})})
        for row in rows
    ]


def _step_labels(
    step: Step,
    group: Sequence[LabeledSnapshot],
    phase1: Phase1Parameters,
    seed: int,
    student: Student | None,
    teacher: Teacher | None,
    progress: bool,
    monitor: TeacherMonitor | None = None,
) -> list[dict]:
    """One step's fields for each row of a group."""
    if step == "hints":
        answers = teacher.advise([teacher_request(row) for row in group], monitor=monitor)
        return [{"teacher": answer.model_dump(mode="json")} for answer in answers]
    if step == "uncertainty":
        method = phase1.U_method
        return [{"U": snapshot_uncertainty(row, method), "U_method": method} for row in group]
    answers = [row.teacher for row in group]
    measured = measure(
        student,
        group,
        answers,
        phase1,
        seed,
        leverage=step == "leverage",
        cpt=step == "cpt",
        progress=progress,
    )
    key = "leverage" if step == "leverage" else "cpt"
    return [{key: getattr(m, key).model_dump(mode="json")} for m in measured]


def _logs_kept(out: Phase1Layout, made_with: dict) -> bool:
    """Whether the step logs of `out` were made with these labeling parameters (and so count)."""
    return out.record.is_file() and read_json(out.record).get("parameters") == made_with


def check_step_inputs(
    step: Step,
    rows: Sequence[LabeledSnapshot],
    phase1: Phase1Parameters,
    seed: int,
    student_params: StudentParameters,
    teacher_params: TeacherParameters,
    out: Phase1Layout,
    source: object = "",
) -> None:
    """Refuse, before anything is written, rows that lack a field the step needs (with the
    labels its step logs already hold for them): `MissingField` names the row and the field."""
    if step not in STEPS:
        raise ValueError(f"unknown labeling step {step!r}; known: {', '.join(STEPS)}")
    _check_distinct(rows, source or "rows to label")
    made_with = labeling_parameters(phase1, seed, student_params, teacher_params)
    known = merged_rows(rows, out) if _logs_kept(out, made_with) else list(rows)
    require_fields(known, step, phase1, source)


def label_step(
    step: Step,
    rows: Sequence[LabeledSnapshot],
    phase1: Phase1Parameters,
    seed: int,
    student_params: StudentParameters,
    teacher_params: TeacherParameters,
    out: Phase1Layout,
    progress: bool = True,
    student: Student | None = None,
    teacher: Teacher | None = None,
) -> list[LabeledSnapshot]:
    """One step of the labeling for `rows`, resumable: its labels go to `steps/<step>.jsonl`
    as each group completes, then both labeled files are rewritten with every label known.
    `student` is loaded from `student_params` when a rollout step needs it; `hints` needs
    `teacher`, whose answers are held to `teacher.max_invalid_fraction`; a hint that fell back
    to the bot is asked again next time, and where the new answer changes a patch, the row's
    CPT is dropped from its log so that `label cpt` measures it again."""
    if step == "hints" and teacher is None:
        raise ValueError("the hints step needs a teacher")
    check_step_inputs(step, rows, phase1, seed, student_params, teacher_params, out)
    open_labeling(out, labeling_parameters(phase1, seed, student_params, teacher_params))
    log = out.step_log(step)
    logged = {entry["id"]: entry for entry in read_jsonl(log)}
    if step == "hints":
        done = {i for i, entry in logged.items() if entry["teacher"]["valid"]}
    else:
        done = set(logged)
    pending = merged_rows([row for row in rows if row.id not in done], out)
    if step in ("leverage", "cpt") and pending and student is None:
        student = Student.load(student_params)
    monitor = None
    if step == "hints":
        out.teacher_health.unlink(missing_ok=True)
        monitor = TeacherMonitor(
            teacher, "label hints", len(rows), teacher_params.max_invalid_fraction, progress
        )
    changed = set()
    with tqdm(total=len(pending), desc=step, unit="snapshot", disable=not progress) as bar:
        for group in in_groups(pending, phase1.batch_snapshots):
            labels = _step_labels(step, group, phase1, seed, student, teacher, progress, monitor)
            for row, fields in zip(group, labels, strict=True):
                append_jsonl(log, {"id": row.id, **fields})
                if step == "hints" and row.id in logged:
                    answer = TeacherAnswer.model_validate(fields["teacher"])
                    if not same_patches(row.teacher, answer):
                        changed.add(row.id)
            bar.update(len(group))
    if monitor is not None:
        save_teacher_health(out.teacher_health, monitor.finish())
    cpt_log = out.step_log("cpt")
    if changed and cpt_log.is_file():
        kept = [entry for entry in read_jsonl(cpt_log) if entry["id"] not in changed]
        write_jsonl(cpt_log, kept)
    merged = merged_rows(rows, out)
    save_labeled(out, merged)
    return merged
