"""Phase 1 labels: how unsure the student is at a snapshot (U), how much forcing the expert's
action changes the outcome (leverage), and how much a teacher's patch in the prompt changes it
(the contextual patch test, CPT).

Every rollout restores the snapshot and lets the student act, sampling at `phase1.temperature`,
for at most `phase1.max_steps` steps; success is the level's reward > 0. The rollouts of a group
of snapshots (every condition, every repetition) go through one `run_episodes` call, so the
scorer always sees large batches. Each rollout's random stream is seeded from (run seed,
snapshot id, condition, rollout index), so a label does not depend on the group, the order or a
resumption. Batched scoring itself moves log-probabilities by ~1e-6 with the make-up of a batch,
which can flip a sampled action only with a probability of that order.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from teachable.models.rollouts import EpisodeSpec, run_episodes, success_rate
from teachable.models.student import Student, normalized_entropy
from teachable.models.supervision import PLACEBO, patch_text
from teachable.models.teachers import Teacher, TeacherMonitor, TeacherRequest
from teachable.parameters import Phase1Parameters, StudentParameters, TeacherParameters
from teachable.records.labeled import (
    CPT,
    FORMATS,
    LabeledSnapshot,
    Leverage,
    TeacherAnswer,
    TeacherHealth,
    UMethod,
    _check_distinct,
    assign_quadrants,
    save_labeled,
    save_teacher_health,
)
from teachable.records.layout import Phase0Layout, Phase1Layout
from teachable.records.quadrants import (
    Quadrant,
    Thresholds,
    auto_thresholds,
    quadrant_counts,
    save_thresholds,
    small_quadrants,
)
from teachable.records.snapshot import Snapshot
from teachable.records.store import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from teachable.world.replay import load_replayed_snapshots
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


def rollout_seed(run_seed: int, snapshot_id: str, condition: str, index: int) -> tuple[int, ...]:
    """The seed of one rollout's random stream."""
    return (run_seed, stable_int(snapshot_id), stable_int(condition), index)


@dataclass(frozen=True)
class RolloutCondition:
    """`n` rollouts from one snapshot, all started the same way: plain, with a patch in the
    first prompt, or with a forced first action."""

    snapshot: Snapshot
    name: str
    n: int
    patch: str | None = None
    forced_action: str | None = None

    def specs(self, run_seed: int) -> list[EpisodeSpec]:
        return [
            EpisodeSpec(
                self.snapshot.state,
                rollout_seed(run_seed, self.snapshot.id, self.name, index),
                self.patch,
                self.forced_action,
            )
            for index in range(self.n)
        ]


def leverage_conditions(snapshot: Snapshot, n: int) -> list[RolloutCondition]:
    """The student on its own, and the student after the expert's action is forced."""
    return [
        RolloutCondition(snapshot, "student", n),
        RolloutCondition(snapshot, "forced", n, forced_action=snapshot.expert_action),
    ]


def cpt_conditions(snapshot: Snapshot, answer: TeacherAnswer, n: int) -> list[RolloutCondition]:
    """No patch, the placebo, and the teacher's answer in each supervision format."""
    return [
        RolloutCondition(snapshot, "base", n),
        RolloutCondition(snapshot, "placebo", n, patch=PLACEBO),
        *(RolloutCondition(snapshot, f, n, patch=patch_text(f, answer)) for f in FORMATS),
    ]


def success_rates(
    student: Student,
    conditions: Sequence[RolloutCondition],
    phase1: Phase1Parameters,
    seed: int,
    progress: bool = False,
    batched: bool = True,
) -> dict[tuple[str, str], float]:
    """Success rate per (snapshot id, condition), every rollout in one `run_episodes` call;
    `batched=False` is the reference that runs one rollout per call."""
    specs = [spec for condition in conditions for spec in condition.specs(seed)]
    settings = (phase1.max_steps, phase1.temperature, student.params.history)
    if batched:
        episodes = run_episodes(student, specs, *settings, progress=progress)
    else:
        episodes = [run_episodes(student, [spec], *settings)[0] for spec in specs]
    rates, start = {}, 0
    for condition in conditions:
        batch = episodes[start : start + condition.n]
        rates[(condition.snapshot.id, condition.name)] = round(success_rate(batch), 6)
        start += condition.n
    return rates


def expert_reach(snapshot: Snapshot, max_steps: int) -> float:
    """1.0 when the bot still finishes the task from the snapshot within `max_steps`, else 0.0."""
    return float(expert_trajectory(snapshot.state, max_steps)[1])


def leverage_from_rates(
    p_student: float, p_forced: float, n: int, l_upper: float | None = None
) -> Leverage:
    return Leverage(
        L_local=round(p_forced - p_student, 6),
        p_student=p_student,
        p_forced=p_forced,
        n=n,
        L_upper=l_upper,
    )


def cpt_from_rates(p: dict[str, float], n: int) -> CPT:
    """ELP per format, and the best format over the placebo (the first of demo, hint,
    contrast on a tie)."""
    missing = [c for c in CPT_CONDITIONS if c not in p]
    if missing:
        raise ValueError(f"CPT rates lack condition(s) {missing}")
    net = {f: p[f] - p["placebo"] for f in FORMATS}
    route = max(FORMATS, key=lambda f: net[f])
    return CPT(
        p={c: p[c] for c in CPT_CONDITIONS},
        ELP={f: round(p[f] - p["base"], 6) for f in FORMATS},
        ELP_net=round(net[route], 6),
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


def measure(
    student: Student,
    snapshots: Sequence[Snapshot],
    answers: Sequence[TeacherAnswer | None],
    phase1: Phase1Parameters,
    seed: int,
    leverage: bool = True,
    cpt: bool = True,
    progress: bool = False,
    batched: bool = True,
) -> list[Measured]:
    """Leverage and/or CPT for each snapshot, from one batched run of all their rollouts
    (`batched=False`: one rollout at a time, the reference)."""
    conditions: list[RolloutCondition] = []
    for snapshot, answer in zip(snapshots, answers, strict=True):
        if leverage:
            conditions += leverage_conditions(snapshot, phase1.n_rollouts)
        if cpt:
            if answer is None:
                raise ValueError(f"snapshot {snapshot.id}: CPT needs the teacher's answer")
            conditions += cpt_conditions(snapshot, answer, phase1.n_per_condition)
    rates = success_rates(student, conditions, phase1, seed, progress, batched)
    measured = []
    for snapshot in snapshots:
        lever = None
        if leverage:
            upper = expert_reach(snapshot, phase1.max_steps) if phase1.L_upper else None
            lever = leverage_from_rates(
                rates[(snapshot.id, "student")],
                rates[(snapshot.id, "forced")],
                phase1.n_rollouts,
                upper,
            )
        patch = None
        if cpt:
            by_condition = {c: rates[(snapshot.id, c)] for c in CPT_CONDITIONS}
            patch = cpt_from_rates(by_condition, phase1.n_per_condition)
        measured.append(Measured(lever, patch))
    return measured


def label_group(
    student: Student,
    teacher: Teacher,
    snapshots: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    progress: bool = False,
    monitor: TeacherMonitor | None = None,
) -> list[LabeledSnapshot]:
    """Every label of a group of snapshots: teacher answers (counted by `monitor`), U, then one
    batched rollout run for leverage and CPT (each left None when its `skip_` parameter is
    set)."""
    answers = teacher.advise([teacher_request(s) for s in snapshots], monitor=monitor)
    measured = measure(
        student,
        snapshots,
        answers,
        phase1,
        seed,
        leverage=not phase1.skip_leverage,
        cpt=not phase1.skip_cpt,
        progress=progress,
    )
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
        for snapshot, answer, result in zip(snapshots, answers, measured, strict=True)
    ]


def same_patches(old: TeacherAnswer | None, new: TeacherAnswer) -> bool:
    """Whether two answers put the same text into every CPT patch (then CPT is unchanged)."""
    return old is not None and all(
        patch_text(format, old) == patch_text(format, new) for format in FORMATS
    )


def reask_group(
    student: Student,
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
        measured = measure(
            student,
            [row for row, _ in changed],
            [answer for _, answer in changed],
            phase1,
            seed,
            leverage=False,
            cpt=True,
            progress=progress,
        )
        cpt_of = {row.id: result.cpt for (row, _), result in zip(changed, measured, strict=True)}
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


def phase1_snapshots(phase1: Phase1Parameters, seed: int, phase0: Phase0Layout) -> list[Snapshot]:
    """The Phase 0 snapshots `phase1.snapshots` names, at most `phase1.max_snapshots` of them
    (a seeded draw that keeps file order)."""
    sources = ["failure", "expert"] if phase1.snapshots == "both" else [phase1.snapshots]
    snapshots = []
    for source in sources:
        path = phase0.snapshots(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run phase 0 first")
        snapshots += load_replayed_snapshots(path)
    _check_distinct(snapshots, phase0.folder)
    cap = phase1.max_snapshots
    if cap is not None and len(snapshots) > cap:
        keep = np.random.default_rng(seed).choice(len(snapshots), cap, replace=False)
        snapshots = [snapshots[i] for i in sorted(keep)]
    return snapshots


def labeling_parameters(
    phase1: Phase1Parameters, seed: int, student: StudentParameters, teacher: TeacherParameters
) -> dict:
    """Every parameter that shapes a label: a change means the labels must be made again.
    Batch sizes are left out on purpose: labels do not depend on them."""
    return {
        "seed": seed,
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
        for labeled in (out.labeled_jsonl, out.labeled_json):
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


def _groups(items: Sequence, size: int) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]


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


def label_snapshots(
    snapshots: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    student: Student,
    teacher: Teacher,
    out: Phase1Layout,
    progress: bool = True,
) -> LabelingReport:
    """All of Phase 1 labeling for `snapshots`, resumable, into `out`.

    Labels the snapshots not yet in `labeled_snapshots.jsonl`, `phase1.batch_snapshots` at a
    time (a kill loses at most one group), then assigns quadrants with the thresholds the
    parameters name and writes `labeled_snapshots.json`, the threshold files and
    `labeling.json`, and the teacher's health in `teacher_health.json`. Every rollout's stream
    derives from the run's `seed`.

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
    changed = 0
    for group in _groups(fell_back, phase1.batch_snapshots):
        rows, different = reask_group(student, teacher, group, phase1, seed, progress, monitor)
        done.update((row.id, row) for row in rows)
        write_jsonl(out.labeled_jsonl, [row.model_dump(mode="json") for row in done.values()])
        changed += different
    if fell_back:
        notes.append(
            f"{len(fell_back)} row(s) whose teacher answer had fallen back to the bot were asked "
            f"again; {changed} got a different answer"
            + ("" if phase1.skip_cpt else " and a new CPT")
        )
    with tqdm(total=len(pending), desc="labeling", unit="snapshot", disable=not progress) as bar:
        for group in _groups(pending, phase1.batch_snapshots):
            for row in label_group(student, teacher, group, phase1, seed, progress, monitor):
                append_jsonl(out.labeled_jsonl, row.model_dump(mode="json"))
                done[row.id] = row
            bar.update(len(group))
    health = monitor.finish()
    assignment = place_in_quadrants([done[s.id] for s in snapshots], out, phase1)
    save_teacher_health(out.teacher_health, health)
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
        student, group, answers, phase1, seed, step == "leverage", step == "cpt", progress
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
        for group in _groups(pending, phase1.batch_snapshots):
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
