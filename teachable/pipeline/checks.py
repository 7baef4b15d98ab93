"""Checks of a run folder: `python -m teachable check runs/<run>` shows its artifacts and its
science.

Artifacts: the plan's pilot must leave Phase 1's labeled snapshots (non-empty), Phase 2's
training summary, Phase 3's five CSVs, Phase 4's training result and the run's verdicts, each
readable. Each check is one `RunCheck` in `CHECKS`: the artifact it looks at and how to inspect
it. Checks of the parts a run may not have reached (Phase 5, the paper artifacts) apply only when
the run holds their folder. While a run is in progress (a live process holds `run.lock`), the
first line names it and an artifact it has not written yet waits rather than fails. An artifact
that passes says nothing of the plan's hypotheses.

Science: every verdict of `verdicts.json`, each criterion of the plan with its figure, interval,
n and outcome (holds, fails or inconclusive). The primary verdicts (the plan's own criteria,
`PRIMARY_FAMILY`) are judged together at their Holm steps (`teachable.measure.multiplicity`);
the secondary ones each on its own 95% interval. `check --science` fails on a primary that fails.
Figures are printed without a sign on zero: `0.000`, never `-0.000`.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from teachable.measure.multiplicity import primary_family
from teachable.pipeline.lock import Holder, running_holder
from teachable.records.layout import EvaluationLayout, RunLayout
from teachable.records.store import BadFile, read_json, read_jsonl
from teachable.records.verdicts import OUTCOMES, Outcome, Verdict, Verdicts


class CheckFailed(Exception):
    """An artifact is there but unusable; the message says why, in a few words."""


def jsonl_rows(path: Path) -> str:
    """A JSONL file with at least one complete row, every row valid JSON, no id twice (two
    writers at once, or a resume that appended a row again, leave the same id on two lines)."""
    try:
        rows = read_jsonl(path)
    except BadFile as error:
        raise CheckFailed(str(error)) from None
    if not rows:
        raise CheckFailed(f"{path} holds no row")
    ids = Counter(row["id"] for row in rows if isinstance(row, dict) and "id" in row)
    repeated = [name for name, count in ids.items() if count > 1]
    if repeated:
        where = [
            n
            for n, row in enumerate(rows, 1)
            if isinstance(row, dict) and row.get("id") == repeated[0]
        ]
        raise CheckFailed(
            f"{path} holds {len(rows)} rows for {len(ids)} ids: {len(repeated)} id(s) appear "
            f"more than once (first: {repeated[0]}, rows {', '.join(map(str, where))})"
        )
    return f"{len(rows)} rows"


def json_document(path: Path) -> str:
    """A file that parses as one JSON document."""
    try:
        document = read_json(path)
    except BadFile as error:
        raise CheckFailed(str(error)) from None
    kind = "object" if isinstance(document, dict) else type(document).__name__
    return f"valid JSON {kind}"


def csv_table(path: Path) -> str:
    """A CSV file with a header and at least one row under it."""
    with path.open(newline="") as file:
        lines = [line for line in csv.reader(file) if line]
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise CheckFailed(f"{path} is empty: no header")
    if len(lines) == 1:
        raise CheckFailed(f"{path} has a header but no row")
    return f"{len(lines) - 1} rows x {len(lines[0])} columns"


def folder_with_files(path: Path) -> str:
    """A folder holding at least one file."""
    if not path.is_dir():
        raise CheckFailed(f"{path} is not a folder")
    files = [item for item in path.rglob("*") if item.is_file()]
    if not files:
        raise CheckFailed(f"{path} holds no file")
    return f"{len(files)} files"


def artifact_record(path: Path) -> str:
    """The paper artifacts' record (`artifacts.json`), every file it lists as built present."""
    json_document(path)
    record = read_json(path)
    if not isinstance(record, dict):
        raise CheckFailed(f"{path} holds no artifact record (expected an object)")
    listed = [name for files in record.get("built", {}).values() for name in files]
    missing = [name for name in listed if not (path.parent / name).is_file()]
    if missing:
        raise CheckFailed(f"{path.parent / missing[0]} is listed as built in {path} but missing")
    built, skipped = len(record.get("built", {})), len(record.get("skipped", {}))
    return f"{built} artifacts built ({len(listed)} files), {skipped} skipped"


def outcome_tally(outcomes: Iterable[Outcome]) -> str:
    """`2 holds, 1 fails, 3 inconclusive`."""
    outcomes = list(outcomes)
    return ", ".join(f"{outcomes.count(outcome)} {outcome}" for outcome in OUTCOMES)


def verdict_record(path: Path) -> str:
    """The run's `verdicts.json`, every verdict in its schema."""
    try:
        verdicts = Verdicts.load(path).verdicts
    except ValueError as error:  # not JSON, or a verdict out of its schema
        raise CheckFailed(str(error)) from None
    return f"{len(verdicts)} verdicts: {outcome_tally(v.outcome for v in verdicts)}"


@dataclass(frozen=True)
class RunCheck:
    """One criterion: the artifact at `path` of the run layout exists and passes `inspect`,
    which says what it found or raises `CheckFailed`. With `only_with`, the check applies only
    when the run holds that folder."""

    name: str
    path: Callable[[RunLayout], Path]
    inspect: Callable[[Path], str]
    only_with: Callable[[RunLayout], Path] | None = None


@dataclass(frozen=True)
class CheckResult:
    """One line of the artifact checks; `wait` is an artifact a run in progress has not written
    yet, and `busy` the line that names that run."""

    name: str
    status: Literal["pass", "fail", "skip", "wait", "busy"]
    reason: str


CHECKS: tuple[RunCheck, ...] = (
    RunCheck("phase 1 labeled snapshots", lambda run: run.phase1.labeled_jsonl, jsonl_rows),
    RunCheck("phase 2 training summary", lambda run: run.phase2.training_summary, json_document),
    *(
        RunCheck(f"phase 3 {table.name}", lambda run, i=i: run.phase3.csvs()[i], csv_table)
        for i, table in enumerate(EvaluationLayout(Path()).csvs())
    ),
    RunCheck("phase 4 training result", lambda run: run.phase4.training_result, json_document),
    RunCheck("verdicts", lambda run: run.verdicts, verdict_record),
    RunCheck(
        "phase 5 selection summary",
        lambda run: run.phase5.summary,
        json_document,
        only_with=lambda run: run.phase5.folder.parent,
    ),
    RunCheck("paper figures", lambda run: run.figures, folder_with_files, lambda run: run.figures),
    RunCheck("paper tables", lambda run: run.tables, folder_with_files, lambda run: run.tables),
    RunCheck(
        "paper artifacts", lambda run: run.artifacts, artifact_record, lambda run: run.figures
    ),
)


def run_check(check: RunCheck, run: RunLayout, in_progress: bool = False) -> CheckResult:
    """Apply one criterion to a run folder; the reason names the artifact. A missing artifact
    fails, unless a run is `in_progress` in the folder: then it waits."""
    if check.only_with is not None and not (needed := check.only_with(run)).exists():
        return CheckResult(check.name, "skip", f"the run has no {needed.name}/ (not run yet)")
    path = check.path(run)
    if not path.exists() and in_progress:
        return CheckResult(check.name, "wait", f"{path.relative_to(run.folder)}: not written yet")
    if not path.exists():
        return CheckResult(check.name, "fail", f"{path} is missing")
    try:
        found = check.inspect(path)
    except CheckFailed as error:
        return CheckResult(check.name, "fail", str(error))
    return CheckResult(check.name, "pass", f"{path.relative_to(run.folder)}: {found}")


def run_in_progress(holder: Holder) -> CheckResult:
    """The line that names the run in progress in the folder."""
    return CheckResult("run in progress", "busy", f"{holder.describe()}; it may still write")


def check_run(run_dir: Path, checks: Sequence[RunCheck] = CHECKS) -> list[CheckResult]:
    """Every criterion applied to the run folder, in order; first, while a run is in progress
    there, the line that names it."""
    run = RunLayout(run_dir)
    holder = running_holder(run.lock)
    results = [run_check(check, run, in_progress=holder is not None) for check in checks]
    return results if holder is None else [run_in_progress(holder), *results]


def describe(results: Sequence[CheckResult]) -> str:
    """One line per artifact check (status, name, reason), then the tally."""
    width = max(len(result.name) for result in results)
    lines = [f"{r.status.upper():4}  {r.name:<{width}}  {r.reason}" for r in results]
    tally = Counter(result.status for result in results)
    waiting = f", {tally['wait']} not written yet (run in progress)" if tally["busy"] else ""
    lines.append(
        f"{tally['pass']} artifacts present{waiting}, {tally['fail']} missing or unusable, "
        f"{tally['skip']} not applicable"
    )
    return "\n".join(lines)


def run_verdicts(run_dir: Path) -> list[Verdict]:
    """The run's verdicts; none when no phase has judged a criterion, or when the file is
    unreadable (its artifact check says why)."""
    try:
        return Verdicts.load(RunLayout(run_dir).verdicts).verdicts
    except ValueError:
        return []


# A minus before a figure that prints as zero (`-0.000`, `-0`): a rounded tiny negative.
NEGATIVE_ZERO = re.compile(r"(?<![\w.])-(?=0(?:\.0+)?(?![\w.]))")


def unsigned_zeros(text: str) -> str:
    """`text` with every `-0.000` (or `-0`) printed as `0.000`: a figure that rounds to zero
    has no side."""
    return NEGATIVE_ZERO.sub("", text)


def describe_verdicts(verdicts: Sequence[Verdict]) -> str:
    """The primary verdicts, each at its Holm step with its own 95% outcome beside it, and the
    primaries not judged yet; then the secondary verdicts on their own intervals; each part
    with its tally."""
    if not verdicts:
        return "no verdict: no phase has judged a criterion of the plan"
    family = primary_family(verdicts)
    size = len(family.adjusted) + len(family.missing)
    secondary = [verdict for verdict in verdicts if verdict.role == "secondary"]
    return unsigned_zeros(
        "\n".join(
            [
                f"primary: the plan's own criteria, {size} judged together by Holm's step-down "
                f"(familywise error {family.familywise_error:.0%})",
                *(adjusted.line() for adjusted in family.adjusted),
                *(f"[not judged yet] {phase} {criterion}" for phase, criterion in family.missing),
                outcome_tally(adjusted.outcome for adjusted in family.adjusted),
                "",
                "secondary: each on its own 95% interval",
                *(verdict.line() for verdict in secondary),
                outcome_tally(verdict.outcome for verdict in secondary),
            ]
        )
    )
