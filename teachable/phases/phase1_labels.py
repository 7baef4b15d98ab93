"""Phase 1 labels: how unsure the student is at a snapshot (U), how much forcing the expert's
action changes the outcome (leverage), and how much a teacher's patch in the prompt changes it
(the contextual patch test, CPT).

Phase 1 first splits the Phase 0 snapshots by task, once for the run (`world.splits`,
`split.json`): it labels the `labeled` part fully, gives the `test` part U and leverage only
(their quadrant, for Phase 3), and leaves the `pool` unlabeled for Phase 5.

Every rollout restores the snapshot and lets the student act, sampling at `phase1.temperature`,
for at most `phase1.max_steps` steps; success is the level's reward > 0. The rollouts of a group
of snapshots (every condition, every repetition) are one unit of the workers (`models.labeling`)
and go through one `run_episodes` call, so the scorer always sees large batches. Rollout i of
every condition shares its random stream (`models.conditions`) and the labels are means of
paired differences (`measure.labels`), so a label does not depend on the group, the order or a
resumption. Batched scoring moves log-probabilities by ~1e-6 with the make-up of a batch, which
can flip a sampled action only with a probability of that order.

Label reliability: `phase1.reliability_panel` labeled snapshots (a seeded draw) are labeled a
second time on the independent `retest` streams (`models.retest`, `reliability.jsonl`,
resumable), and the test-retest correlation of U, L_local and ELP_net goes to `reliability.json`.

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

import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from teachable.measure.reliability import label_reliability
from teachable.models.conditions import (
    RETEST,
    stable_int,
)
from teachable.models.label_steps import STEPS, Step, merged_rows, require_fields, step_labels
from teachable.models.labeling import (
    Measured,
    Measurement,
    in_groups,
    is_complete,
    labeled_rows,
    labeling_measurements,
    labeling_parameters,
    leverage_rows,
    reask_group,
    run_measurements,
    same_patches,
)
from teachable.models.quadrant_placement import place_in_quadrants
from teachable.models.retest import (
    reliability_panel,
    retest_measurements,
    retested_rows,
    still_to_retest,
)
from teachable.models.student import Student
from teachable.models.teachers import Teacher, TeacherMonitor
from teachable.models.workers import Workers
from teachable.parameters import Phase1Parameters, StudentParameters, TeacherParameters
from teachable.records.estimate import Estimate
from teachable.records.labeled import (
    LabeledSnapshot,
    TeacherAnswer,
    TeacherHealth,
    _check_distinct,
    save_labeled,
    save_teacher_health,
)
from teachable.records.layout import Phase0Layout, Phase1Layout
from teachable.records.quadrants import Thresholds
from teachable.records.reliability import save_reliability
from teachable.records.snapshot import Snapshot
from teachable.records.store import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from teachable.vocabulary import Quadrant
from teachable.world.replay import phase0_snapshots
from teachable.world.splits import Split, split_snapshots


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


def finished_rows(out: Phase1Layout, phase1: Phase1Parameters) -> dict[str, LabeledSnapshot]:
    """Complete rows already in `labeled_snapshots.jsonl`, by id. Incomplete rows (left by
    the stepwise commands) are dropped from the log so that relabeling them adds no duplicate."""
    path = out.labeled_jsonl
    rows = [LabeledSnapshot.model_validate(row) for row in read_jsonl(path)]
    done = {row.id: row for row in rows if is_complete(row, phase1)}
    if len(done) < len(rows):
        write_jsonl(path, [row.model_dump(mode="json") for row in done.values()])
    return done


def retest_panel(
    workers: Workers,
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
    measurements = retest_measurements(still_to_retest(panel, logged), phase1, seed)
    for measurement, measured in run_measurements(
        workers, measurements, "retest", len(measurements), progress
    ):
        for retest in retested_rows(measurement, measured):
            append_jsonl(out.reliability_log, retest.model_dump(mode="json"))
            logged[retest.id] = retest
    return [logged[row.id] for row in panel]


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
    workers: Workers,
    teacher: Teacher,
    out: Phase1Layout,
    progress: bool = True,
) -> LabelingReport:
    """All of Phase 1 labeling for `snapshots`, resumable, into `out`.

    Labels the snapshots not yet in `labeled_snapshots.jsonl`, `phase1.batch_snapshots` at a
    time: each group is a unit of `workers`, and its rows are appended as it ends (a kill loses
    the groups in flight). Then it assigns quadrants with the thresholds the parameters name
    and writes `labeled_snapshots.json`, the threshold files and `labeling.json`, and the
    teacher's health in `teacher_health.json`. Every rollout's stream derives from the run's
    `seed`. With `phase1.reliability_panel`, that many labeled rows are labeled again on the
    `retest` streams and `reliability.json` gets their test-retest r with its Fisher-z
    interval.

    Finished rows whose teacher answer fell back to the bot are asked again first. When more
    than `teacher.max_invalid_fraction` of the answers the rows hold are invalid or failed,
    `TeacherOutage` stops the labeling as soon as that is certain; the rows finished until
    then stay in the log.
    """
    started = time.perf_counter()
    if not snapshots:
        raise ValueError("no snapshots to label")
    _check_distinct(snapshots, "snapshots to label")
    made_with = labeling_parameters(phase1, seed, workers.params, teacher.params)
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
        reliability = label_reliability(panel, retest)
        save_reliability(out, panel, reliability, RETEST)
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


def label_test_snapshots(
    snapshots: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    workers: Workers,
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
        results = run_measurements(workers, measurements, "test labels", len(groups), progress)
    for measurement, measured in results:
        for row in leverage_rows(measurement, measured):
            append_jsonl(out.test_labels, row.model_dump(mode="json"))
            done[row.id] = row
    rows = [done[snapshot.id] for snapshot in snapshots]
    write_jsonl(out.test_labels, [row.model_dump(mode="json") for row in rows])
    return rows


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
            labels = step_labels(step, group, phase1, seed, student, teacher, progress, monitor)
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
