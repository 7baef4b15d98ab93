"""Run the phase notebooks headlessly with papermill, in order, and keep them as reports.

Each phase is one notebook under `notebooks/` with one section of the parameter file. The
runner hands the notebook that section, executes it in its own folder on this interpreter's
`python3` kernel (over Unix sockets, not TCP), saves the executed copy under
`runs/<run>/reports/` (the ipynb whole, the HTML page without code: `reports.export`), and
skips a phase whose outputs are up to date. A new phase is one more entry in `PHASES`. While a
phase runs, its own progress bars show in the runner's output (`pipeline.progress`) instead of
a bar per cell; after it, `runs/<run>/reports/index.html` is written anew (`reports.index`).

One run per run folder: the runner holds `runs/<run>/run.lock` for the whole run
(`pipeline.lock`). A phase that asks a teacher writes its teacher's health; the runner keeps
its one-line summary in the phase's record, and the command prints it when the run ends.
Each phase's record keeps the units it had left to run (`pipeline.workload`); every
invocation is appended to the run's history (`pipeline.history`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import papermill
from nbclient.exceptions import DeadKernelError
from papermill.exceptions import PapermillExecutionError
from traitlets.config import Config

from teachable.parameters import TOP_LEVEL, Parameters, section_descriptions
from teachable.pipeline.history import Invocation, append_invocation
from teachable.pipeline.lock import hold_lock
from teachable.pipeline.progress import TerminalProgress, kernel_arguments
from teachable.pipeline.provenance import PhaseRecord, Provenance, now
from teachable.pipeline.workload import units_left
from teachable.records.labeled import load_teacher_health
from teachable.records.layout import RunLayout
from teachable.records.store import BadFile, read_json, read_jsonl, write_json
from teachable.records.verdicts import Verdict
from teachable.reports.export import export_html
from teachable.reports.index import write_index

PACKAGE_DIR = Path(__file__).resolve().parents[1]


NOTEBOOKS_DIR = PACKAGE_DIR.parent / "notebooks"


KERNEL_NAME = "python3"


Paths = Callable[[RunLayout], tuple[Path, ...]]


def nothing(run: RunLayout) -> tuple[Path, ...]:
    return ()


@dataclass(frozen=True)
class Gate:
    """The outcome a phase writes (`outcome` and its `verdicts` in a JSON file): `fails` stops
    the pipeline unless the phase's section sets `continue_on_failed_gate`, `inconclusive` goes
    on with a loud note, `holds` goes on quietly."""

    file: Callable[[RunLayout], Path]


@dataclass(frozen=True)
class Phase:
    """One step of the pipeline; `outputs` and `inputs` give its files in the run layout.
    `optional_inputs` are read when present: a newer one makes the phase stale, a missing one
    is no error."""

    name: str
    notebook: str
    section: str
    outputs: Paths
    inputs: Paths = nothing
    gate: Gate | None = None
    optional_inputs: Paths = nothing
    teacher_health: Paths = nothing  # where the phase writes its teacher's health, if it asks


PHASES: tuple[Phase, ...] = (
    Phase(
        name="0",
        notebook="00_rollouts.ipynb",
        section="phase0",
        outputs=lambda run: (
            run.phase0.warmup,
            run.phase0.rollouts,
            run.phase0.failure_snapshots,
            run.phase0.expert_snapshots,
        ),
        teacher_health=lambda run: (run.phase0.teacher_health,),
    ),
    Phase(
        name="1",
        notebook="01_labeling.ipynb",
        section="phase1",
        outputs=lambda run: (
            run.split,
            run.phase1.labeled_jsonl,
            run.phase1.labeled_json,
            run.phase1.test_labels,
            run.phase1.thresholds_auto,
            run.phase1.quantiles,
        ),
        inputs=lambda run: (run.phase0.failure_snapshots,),
        teacher_health=lambda run: (run.phase1.teacher_health,),
    ),
    Phase(
        name="1a",
        notebook="01a_dose.ipynb",
        section="training",
        outputs=lambda run: (
            run.phase1a.dose,
            run.phase1a.anchor_states,
            run.phase1a.probe_states,
        ),
        inputs=lambda run: (run.phase0.warmup, run.split, run.phase1.labeled_json),
        gate=Gate(lambda run: run.phase1a.dose),
    ),
    Phase(
        name="1b",
        notebook="01b_cpt_validation.ipynb",
        section="phase1b",
        outputs=lambda run: (run.phase1b.results, run.phase1b.correlation),
        inputs=lambda run: (run.phase0.warmup, run.phase1.labeled_json, run.phase1a.dose),
        gate=Gate(lambda run: run.phase1b.correlation),
    ),
    Phase(
        name="2",
        notebook="02_training_matrix.ipynb",
        section="phase2",
        outputs=lambda run: (run.phase2.training_summary,),
        inputs=lambda run: (
            run.phase0.warmup,
            run.split,
            run.phase1.labeled_json,
            run.phase1a.dose,
        ),
    ),
    Phase(
        name="3",
        notebook="03_evaluation.ipynb",
        section="phase3",
        outputs=lambda run: run.phase3.csvs(),
        inputs=lambda run: (run.phase2.training_summary, run.split, run.phase1.test_labels),
    ),
    Phase(
        name="4",
        notebook="04_predictor.ipynb",
        section="phase4",
        outputs=lambda run: (
            run.phase4.training_result,
            run.phase4.predictor_model,
            run.phase4.test_predictions,
        ),
        inputs=lambda run: (run.phase1.labeled_jsonl,),
        optional_inputs=lambda run: (run.phase1.reliability,),  # the R² ceilings
    ),
    Phase(
        name="5",
        notebook="05_selection.ipynb",
        section="phase5",
        outputs=lambda run: (run.phase5.summary,),
        inputs=lambda run: (
            run.phase0.warmup,
            run.split,
            run.phase1.test_labels,
            run.phase4.predictor_model,
            run.phase1a.dose,
        ),
        optional_inputs=lambda run: (run.phase3.record,),  # the evaluation counts are Phase 3's
    ),
    Phase(
        name="artifacts",
        notebook="06_paper_artifacts.ipynb",
        section="artifacts",
        outputs=lambda run: (run.artifacts,),
        optional_inputs=lambda run: (
            run.verdicts,
            run.phase1.labeled_json,
            run.phase1.reliability,
            run.phase1b.correlation,
            run.phase3.overall,
            run.phase3.transfer,
            run.phase3.transfer_summary,
            run.phase3.retention,
            run.phase4.training_result,
            run.phase5.summary,
        ),
    ),
)


class PhaseFailed(RuntimeError):
    """A phase could not finish; the message names the notebook, its report and the error."""


class GateFailed(PhaseFailed):
    """A gate phase finished, and its outcome (`fails`) says the pipeline must not go on."""


class PrerequisiteMissing(ValueError):
    """The run cannot start: a key, a folder or a readable file its parameters need is not
    there."""


def check_prerequisites(parameters: Parameters) -> None:
    """Stop before any phase when the openai teacher has no `OPENAI_API_KEY`, or
    `student.model_path` (or a local `student.model`) is not a loadable model folder (config,
    weights, tokenizer), with the teacher's and the student loader's own errors. Their modules
    load slowly, so each is imported only when the run needs it."""
    student = parameters.student
    local_model = student.model not in ("default", "tiny") and Path(student.model).is_dir()
    try:
        if parameters.teacher.backend == "openai":
            from teachable.models.teachers import make_teacher

            make_teacher(parameters)
        if student.model_path is not None or local_model:
            from teachable.models.student import check_model_folder

            if student.model_path is not None:
                check_model_folder(student.model_path, "student.model_path")
            else:
                check_model_folder(student.model, "student.model")
    except (RuntimeError, FileNotFoundError, BadFile) as error:
        raise PrerequisiteMissing(f"{parameters.source}: {error}") from None


def check_readable_inputs(parameters: Parameters, phases: Sequence[Phase]) -> None:
    """Stop before any phase when a JSON or JSONL input of a selected phase is there but does
    not parse, naming the file and line; inputs an earlier selected phase writes are left to
    it."""
    run = parameters.layout
    written: set[Path] = set()
    for phase in phases:
        for path in (*phase.inputs(run), *phase.optional_inputs(run)):
            if path in written or not path.is_file():
                continue
            try:
                if path.suffix == ".jsonl":
                    read_jsonl(path)
                elif path.suffix == ".json":
                    read_json(path)
            except BadFile as error:
                named = writers(run, path)
                remedy = f"; phase {' or '.join(named)} writes it anew" if named else ""
                raise PrerequisiteMissing(
                    f"phase {phase.name} cannot start: {error}{remedy}"
                ) from None
        written.update(phase.outputs(run))


def select_phases(
    names: Sequence[str] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR
) -> list[Phase]:
    """The named phases in pipeline order (all when no name is given), each with its notebook."""
    known = [phase.name for phase in PHASES]
    unknown = [name for name in names or () if name not in known]
    if unknown:
        raise ValueError(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(known)}")
    phases = [phase for phase in PHASES if not names or phase.name in names]
    for phase in phases:
        if not (Path(notebooks_dir) / phase.notebook).is_file():
            raise ValueError(
                f"phase {phase.name}: no notebook {Path(notebooks_dir) / phase.notebook}"
            )
    return phases


def phase_parameters(parameters: Parameters, phase: Phase) -> dict:
    """The plain dict of the phase's section; empty while `Parameters` has no such section."""
    if phase.section not in Parameters.model_fields:
        return {}
    return parameters.section(phase.section)


def parameters_digest(parameters: Parameters, phase: Phase) -> str:
    """Hash of every parameter that can change the phase's outputs: all sections but the other
    phases' own, and not where the run is stored (`source`, `run.name`, `run.output_root`) or
    where its units run (`execution`: both backends write the same files)."""
    others = {other.section: True for other in PHASES if other.section != phase.section}
    where = {"source": True, "run": {"name": True, "output_root": True}, "execution": True}
    visible = parameters.model_dump(mode="json", exclude=where | others)
    return hashlib.sha256(json.dumps(visible, sort_keys=True).encode()).hexdigest()


def stamp_path(parameters: Parameters, phase: Phase) -> Path:
    """Where the record of the phase's last successful run lives."""
    return parameters.layout.stamp(phase.name)


NEVER_FINISHED = "no finished run on record"


PARAMETERS_CHANGED = "its parameters changed"


def stale_reason(parameters: Parameters, phase: Phase, notebooks_dir: Path) -> str | None:
    """Why the phase must run, or None when its outputs are up to date: they exist, are newer
    than its notebook, its inputs and the package source, and its parameters are unchanged."""
    stamp = stamp_path(parameters, phase)
    if not stamp.exists():
        return NEVER_FINISHED
    if read_json(stamp)["parameters_sha256"] != parameters_digest(parameters, phase):
        return PARAMETERS_CHANGED
    run = parameters.layout
    outputs = list(phase.outputs(run))
    missing = [path for path in outputs if not path.exists()]
    if missing:
        return f"{missing[0]} is missing"
    oldest_output = min(path.stat().st_mtime for path in outputs)
    sources = [
        notebooks_dir / phase.notebook,
        *phase.inputs(run),
        *(path for path in phase.optional_inputs(run) if path.exists()),
        *sorted(PACKAGE_DIR.rglob("*.py")),
    ]
    for path in sources:
        if not path.exists():
            return f"{path} is missing"
        if path.stat().st_mtime > oldest_output:
            return f"{path} is newer than its outputs"
    return None


def writers(run: RunLayout, path: Path) -> list[str]:
    """The phases that write `path` of the run."""
    return [phase.name for phase in PHASES if path in phase.outputs(run)]


def missing_input(
    parameters: Parameters, phase: Phase, written: Collection[Path] = ()
) -> str | None:
    """What stops the phase before its kernel starts: an input that is not there (and not
    among `written`, the outputs of phases that run before it), said with who writes it."""
    run = parameters.layout
    for path in phase.inputs(run):
        if not path.exists() and path not in written:
            return (
                f"phase {phase.name} needs {path}, which does not exist; "
                f"run phase {' or '.join(writers(run, path)) or '?'} first"
            )
    return None


def check_inputs(parameters: Parameters, phase: Phase) -> None:
    """Stop before starting a kernel when an input the phase reads is not there."""
    missing = missing_input(parameters, phase)
    if missing is not None:
        raise PhaseFailed(missing)


def describe_failure(error: Exception, notebook: Path, report: Path) -> str:
    """Which notebook failed, where its report is, and the failing cell with its error."""
    lines = [f"{notebook} failed", f"  report: {report}"]
    if isinstance(error, PapermillExecutionError):
        lines.append(f"  at In [{error.exec_count}]:")
        lines += [f"    {line}" for line in error.source.splitlines()[:5]]
        lines.append(f"  {error.ename}: {error.evalue}")
    else:
        lines.append(f"  {type(error).__name__}: {error}")
    return "\n".join(lines)


def report_path(parameters: Parameters, phase: Phase) -> Path:
    """Where the executed notebook is kept; the HTML page sits beside it."""
    return parameters.layout.report(phase.notebook)


@contextmanager
def ipc_kernel() -> Iterator[Config]:
    """Kernel manager settings that put a phase's kernel on Unix sockets in a private temporary
    folder instead of TCP ports: nothing else on the machine reaches it, and the kernel has no
    unencrypted transport to warn about."""
    with tempfile.TemporaryDirectory(prefix="teachable-kernel-") as folder:
        yield Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})


def shared_sections() -> list[str]:
    """The parameter sections no phase owns (run, student, lora, evaluation, ...): a report
    shows them folded beneath the phase's own."""
    owned = {phase.section for phase in PHASES}
    names = [name for name in section_descriptions() if "." not in name and name != TOP_LEVEL]
    return [name for name in names if name not in owned]


def execute_phase(parameters: Parameters, phase: Phase, notebooks_dir: Path) -> None:
    """Execute the phase notebook into its report, then stamp the success."""
    notebook = notebooks_dir / phase.notebook
    report = report_path(parameters, phase)
    report.parent.mkdir(parents=True, exist_ok=True)
    stamp = stamp_path(parameters, phase)
    stamp.unlink(missing_ok=True)
    for path in phase.teacher_health(parameters.layout):
        path.unlink(missing_ok=True)  # the phase writes it again when it asks a teacher
    shown = (parameters, phase.section, shared_sections())
    progress = TerminalProgress(sys.stdout)  # the phase's own bars, live
    try:
        with ipc_kernel() as kernel:
            papermill.execute_notebook(
                notebook,
                report,
                parameters={
                    "params_file": str(parameters.source.resolve()),
                    "phase_parameters": phase_parameters(parameters, phase),
                    "interactive": False,
                },
                kernel_name=KERNEL_NAME,
                cwd=notebook.parent,
                progress_bar=False,
                stderr_file=progress,
                config=kernel,
                extra_arguments=kernel_arguments(),  # progress bars as text in the report
            )
    except (PapermillExecutionError, DeadKernelError) as error:
        if report.exists():
            export_html(report, *shown)
        raise PhaseFailed(describe_failure(error, notebook, report)) from error
    finally:
        progress.close()
    export_html(report, *shown)
    missing = [str(path) for path in phase.outputs(parameters.layout) if not path.exists()]
    if missing:
        raise PhaseFailed(
            f"{notebook} finished without writing {', '.join(missing)}\n  report: {report}"
        )
    stamped = {"parameters_sha256": parameters_digest(parameters, phase), "finished_at": now()}
    write_json(stamp, {"phase": phase.name, **stamped})


def run_phase(
    parameters: Parameters, phase: Phase, notebooks_dir: Path, force: bool, record: PhaseRecord
) -> None:
    """Run one phase unless it is up to date, filling in its record."""
    label = f"phase {phase.name} ({phase.notebook})"
    reason = "forced" if force else stale_reason(parameters, phase, notebooks_dir)
    if reason is None:
        finished_at = read_json(stamp_path(parameters, phase))["finished_at"]
        record.status, record.reason = "skipped", f"up to date (ran until {finished_at})"
        print(f"{label}: up to date since {finished_at}, skipped (--force reruns it)")
        return
    print(f"{label}: running, {reason}")
    record.units = units_left(phase.name, parameters, reason == PARAMETERS_CHANGED)
    record.status, record.reason, record.started_at = "running", reason, now()
    record.report = str(report_path(parameters, phase))
    try:
        check_inputs(parameters, phase)
        execute_phase(parameters, phase, notebooks_dir)
        record.status = "ran"
        record.teacher = teacher_lines(parameters, phase)
    except PhaseFailed:
        record.status = "failed"
        raise
    finally:
        record.finished_at = now()


def teacher_lines(parameters: Parameters, phase: Phase) -> list[str]:
    """The one-line health of each teacher the phase asked (none when it asked none)."""
    paths = [path for path in phase.teacher_health(parameters.layout) if path.is_file()]
    return [load_teacher_health(path).line() for path in paths]


def gate_banner(phase: Phase, path: Path, gate: dict, lines: Sequence[str]) -> str:
    """The gate's outcome, each of its verdicts and what the run does next, framed in `!`."""
    outcome = gate.get("outcome", "missing")
    verdicts = [Verdict.model_validate(verdict).line() for verdict in gate.get("verdicts", [])]
    heading = f"GATE {outcome.upper()}: phase {phase.name}: outcome {outcome} in {path}"
    return "\n".join(["!" * 80, heading, *(f"  {line}" for line in verdicts), *lines, "!" * 80])


def check_gate(parameters: Parameters, phase: Phase, record: PhaseRecord) -> None:
    """Act on the phase's gate: `holds` goes on; `inconclusive` goes on with a banner, noted in
    the record; `fails` (or no outcome) raises `GateFailed`, unless the phase's section sets
    `continue_on_failed_gate`: then the banner says so and the record keeps it."""
    if phase.gate is None:
        return
    path = phase.gate.file(parameters.layout)
    gate = read_json(path)
    outcome = gate.get("outcome")
    if outcome == "holds":
        return
    if outcome == "inconclusive":
        going_on = "THE RUN GOES ON: no criterion fails, but not every one holds"
        print(gate_banner(phase, path, gate, [going_on]), file=sys.stderr)
        record.reason = f"{record.reason}; gate inconclusive, continued"
        return
    going_on = bool(phase_parameters(parameters, phase).get("continue_on_failed_gate"))
    if going_on:
        then = (
            f"CONTINUING ANYWAY because {phase.section}.continue_on_failed_gate is true: "
            "the later phases rest on a gate that failed"
        )
    else:
        then = f"the pipeline stops here ({phase.section}.continue_on_failed_gate: true goes on)"
    banner = gate_banner(phase, path, gate, [then])
    record.reason = f"{record.reason}; gate failed" + (", continued" if going_on else "")
    if not going_on:
        record.status = "gate failed"
        raise GateFailed(banner)
    print(banner, file=sys.stderr)


def write_reports_index(run: RunLayout, provenance: Provenance) -> Path:
    """The run's front page: every phase of the pipeline, the verdicts the run folder holds
    now, and this invocation as far as it went."""
    return write_index(run, [(phase.name, phase.notebook) for phase in PHASES], asdict(provenance))


def run_phases(
    parameters: Parameters,
    phases: Sequence[Phase] = PHASES,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    force: bool = False,
    command: str | None = None,
) -> Provenance:
    """Run the phases in order, record the run in `provenance.json` and append it, with its
    `command` (default: this process's), to the run's history, and write the reports' index
    after each phase that ran and when the run ends, holding the run folder's lock
    throughout; raise `FolderBusy` at once when another process holds it, `PhaseFailed` at
    the first phase that fails, `GateFailed` at the first gate that stops the run."""
    if parameters.source is None:
        raise ValueError("the runner needs parameters read from a file (load_parameters)")
    with hold_lock(parameters.layout.lock) as holder:
        provenance = Provenance.start(parameters, PACKAGE_DIR)
        status = "failed"
        try:
            for phase in phases:
                record = PhaseRecord(name=phase.name, notebook=phase.notebook)
                provenance.phases.append(record)
                provenance.save(parameters.layout)
                run_phase(parameters, phase, Path(notebooks_dir).resolve(), force, record)
                check_gate(parameters, phase, record)
                if record.status == "ran":
                    write_reports_index(parameters.layout, provenance)
            status = "finished"
        finally:
            provenance.finish(status, parameters.layout)
            invocation = Invocation.of(provenance, command or holder.command)
            append_invocation(parameters.layout, invocation)
            write_reports_index(parameters.layout, provenance)
    return provenance
