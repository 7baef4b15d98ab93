"""The paper's figures and tables, built from the files of one run folder and nothing else.

`build_artifacts(run)` writes each figure as PNG and SVG under `figures/` and each table as
CSV, Markdown and LaTeX under `tables/`. An artifact whose phase has not run (a file it needs is
missing) or whose files hold nothing to show is skipped with its reason, so a partial run gets
every artifact it can. `artifacts.json` records what was built and what was skipped, and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import altair as alt
import pandas as pd

from teachable.measure.frontier import frontier
from teachable.records.cpt_validation import CPTGate, MicroResult, result_frame
from teachable.records.labeled import label_frame, load_labeled
from teachable.records.layout import RunLayout
from teachable.records.predictor import PredictorResult
from teachable.records.quadrants import load_thresholds
from teachable.records.reliability import load_reliability
from teachable.records.selection import SelectionSummary
from teachable.records.store import read_json, write_json
from teachable.records.verdicts import Verdicts
from teachable.reports.charts import save_chart
from teachable.reports.palette import outcome_colour
from teachable.reports.phase1 import scatter_chart as quadrant_scatter_chart
from teachable.reports.phase1b import panel_frame
from teachable.reports.phase1b import scatter_chart as cpt_scatter_chart
from teachable.reports.phase3 import frontier_chart, transfer_heatmap
from teachable.reports.phase4 import metrics_table
from teachable.reports.phase5 import selection_chart, selection_frame
from teachable.reports.verdicts import verdict_frame
from teachable.vocabulary import FORMATS, QUADRANTS

TABLE_SUFFIXES = (".csv", ".md", ".tex")
FIGURE_SUFFIXES = (".png", ".svg")


class NothingToShow(Exception):
    """The run's files are there but hold nothing this artifact can show; says why."""


def labeled_frame(run: RunLayout) -> pd.DataFrame:
    """Phase 1's labels, one line per snapshot, in the chosen (else automatic) quadrants."""
    return label_frame(load_labeled(run.phase1))


def evaluated_overall(run: RunLayout) -> pd.DataFrame:
    overall = pd.read_csv(run.phase3.overall)
    if not (overall["status"] == "evaluated").any():
        raise NothingToShow("Phase 3 evaluated no trained run (Phase 2 skipped them all)")
    return overall


def quadrant_figure(run: RunLayout) -> alt.TopLevelMixin:
    """U against L of every labeled snapshot, coloured by quadrant, with the thresholds."""
    thresholds = load_thresholds(run.phase1)
    if thresholds.L is None:
        raise NothingToShow("leverage was not measured in Phase 1: no U x L plane")
    return quadrant_scatter_chart(labeled_frame(run), thresholds.U, thresholds.L)


def cpt_results(run: RunLayout) -> pd.DataFrame:
    results = [MicroResult.model_validate(row) for row in read_json(run.phase1b.results)]
    if not results:
        raise NothingToShow("Phase 1B micro-trained no snapshot")
    return result_frame(results)


def cpt_figure(run: RunLayout) -> alt.TopLevelMixin:
    """ELP_net against the micro-training's delta vs its control, with Spearman's rho (the raw
    delta's beside it) and the gate's outcome."""
    return cpt_scatter_chart(cpt_results(run), CPTGate.load(run.phase1b.correlation))


GAINS = ("gain", "gain_vs_control")  # over the base, over the shuffled-target control


def training_matrix_frame(run: RunLayout) -> pd.DataFrame:
    """Gain over the base on held-out tasks per cell (quadrants, then the baselines' `all` and
    `random`, then the `shuffled` control) and format over its seeds, and where the control was
    trained the gain over it, one line each with its interval and n; a skipped cell's gains
    are missing, and so is the control's over itself."""
    overall = evaluated_overall(run)
    cells = overall[overall["unit"] == "cell"]
    columns = ["quadrant", "format", "status", "seeds", "n_train"]
    gains = [f"{name}{part}" for name in GAINS for part in ("", "_low", "_high", "_n")]
    return cells[[*columns, *(gain for gain in gains if gain in cells)]]


def training_matrix_figure(run: RunLayout) -> alt.TopLevelMixin:
    """The training matrix as a heatmap: blue cells gained over the base, red lost, grey were
    skipped."""
    frame = training_matrix_frame(run)
    base = alt.Chart(frame).encode(
        x=alt.X("format:N", sort=list(FORMATS), axis=alt.Axis(labelAngle=0), title=None),
        y=alt.Y("quadrant:N", sort=[*QUADRANTS, "all", "random", "shuffled"], title="trained on"),
        tooltip=["quadrant", "format", "seeds", "n_train", "gain", "gain_low", "gain_high"],
    )
    skipped = base.transform_filter("datum.status != 'evaluated'").mark_rect(color="#e5e7eb")
    colour = alt.Color("gain:Q", scale=alt.Scale(scheme="redblue", domainMid=0), title="gain")
    gains = base.transform_filter("datum.status == 'evaluated'").mark_rect().encode(color=colour)
    labels = (
        base.transform_filter("isValid(datum.gain)")
        .mark_text(fontSize=12)
        .encode(text=alt.Text("gain:Q", format="+.2f"))
    )
    return alt.layer(skipped, gains, labels).properties(
        width=240, height=220, title="Success gain over base on held-out tasks (grey: skipped)"
    )


def transfer_frame(run: RunLayout) -> pd.DataFrame:
    matrix = pd.read_csv(run.phase3.transfer)
    if matrix["gain"].isna().all():
        raise NothingToShow("no quadrant run was evaluated on a test snapshot")
    return matrix


def transfer_figure(run: RunLayout) -> alt.TopLevelMixin:
    return transfer_heatmap(transfer_frame(run))


def frontier_frame(run: RunLayout) -> pd.DataFrame:
    """Gain against retention drop per evaluated cell, with their intervals and the Pareto
    flag."""
    table = frontier(evaluated_overall(run), pd.read_csv(run.phase3.retention))
    if table[["gain", "drop"]].dropna().empty:
        raise NothingToShow("no cell has both a gain and a retention drop")
    return table


def frontier_figure(run: RunLayout) -> alt.TopLevelMixin:
    return frontier_chart(frontier_frame(run))


def predictor_target_frame(run: RunLayout) -> pd.DataFrame:
    """Phase 4's verdicts: R² of U and L_local, quadrant accuracy, and at each K the
    predictor's NDCG@K over the entropy ranking's, each with its interval and threshold."""
    return verdict_frame(PredictorResult.load(run.phase4.training_result).verdicts)


def predictor_figure(run: RunLayout) -> alt.TopLevelMixin:
    """Each verdict's figure as a bar (clipped to [-1, 1]) coloured by its outcome, its 95%
    interval as a line and its threshold as a black tick."""
    frame = predictor_target_frame(run).dropna(subset=["value"])
    if frame.empty:
        raise NothingToShow("the predictor measured no out-of-fold metric with a target")
    x = alt.X(
        "criterion:N", sort=list(frame["criterion"]), axis=alt.Axis(labelAngle=-30), title=None
    )
    scale = alt.Scale(domain=[-1, 1], clamp=True)
    tooltip = ["claim", "value", "low", "high", "n", "outcome"]
    base = alt.Chart(frame).encode(x=x, tooltip=tooltip)
    bars = base.mark_bar(size=28, opacity=0.7).encode(
        y=alt.Y("value:Q", scale=scale, title="test value (clipped to [-1, 1])"),
        color=outcome_colour(),
    )
    intervals = base.mark_rule(strokeWidth=2).encode(
        y=alt.Y("low:Q", scale=scale), y2=alt.Y2("high:Q")
    )
    ticks = base.mark_tick(color="black", thickness=3, size=36).encode(
        y=alt.Y("threshold:Q", scale=scale)
    )
    return alt.layer(bars, intervals, ticks).properties(
        width=70 * len(frame), height=220, title="Predictor, out of fold (tick: threshold)"
    )


def selection_summary_of(run: RunLayout) -> SelectionSummary:
    return SelectionSummary.load(run.phase5.summary)


def selection_figure(run: RunLayout) -> alt.TopLevelMixin:
    return selection_chart(selection_summary_of(run))


def quadrant_table(run: RunLayout) -> pd.DataFrame:
    """Snapshots per quadrant with their mean U, L and ELP_net."""
    frame = labeled_frame(run)
    table = (
        frame.groupby("quadrant")
        .agg(
            snapshots=("id", "size"),
            mean_U=("U", "mean"),
            mean_L=("L", "mean"),
            mean_ELP_net=("ELP_net", "mean"),
        )
        .reindex(list(QUADRANTS))
        .fillna({"snapshots": 0})
        .astype({"snapshots": int})
    )
    return table.rename_axis("quadrant").reset_index()


def cpt_table(run: RunLayout) -> pd.DataFrame:
    """Spearman's rho of ELP_net and the micro-training utility and the mean utility, over the
    panel and per quadrant, and Q1 - Q2, each with its interval and n, for the delta vs the
    control (the gate's) and the raw delta."""
    return panel_frame(CPTGate.load(run.phase1b.correlation))


def training_matrix_table(run: RunLayout) -> pd.DataFrame:
    """Gain over the base (and over the control) on held-out tasks per cell, with its interval
    and n: quadrants in order, then the baselines and the control, each in format order."""
    frame = training_matrix_frame(run).rename(columns={"quadrant": "trained on"})
    order = {name: i for i, name in enumerate([*QUADRANTS, "all", "random", "shuffled", *FORMATS])}
    return frame.sort_values(
        ["trained on", "format"], key=lambda column: column.map(order), kind="stable"
    ).drop(columns="status")


def transfer_table(run: RunLayout) -> pd.DataFrame:
    """Per format: the gain on the diagonal (trained and evaluated on one quadrant), off it,
    and their paired difference, each with its interval and n."""
    table = pd.DataFrame(read_json(run.phase3.transfer_summary))
    if table.empty:
        raise NothingToShow("no quadrant cell was evaluated on a test snapshot")
    return table


def predictor_table(run: RunLayout) -> pd.DataFrame:
    result = PredictorResult.load(run.phase4.training_result)
    return metrics_table(result, load_reliability(run.phase1))


def selection_table(run: RunLayout) -> pd.DataFrame:
    return selection_frame(selection_summary_of(run))


def verdicts_table(run: RunLayout) -> pd.DataFrame:
    """Every verdict of the run's `verdicts.json`, in the order the phases wrote them."""
    verdicts = Verdicts.load(run.verdicts).verdicts
    if not verdicts:
        raise NothingToShow("no phase has judged a criterion yet")
    return verdict_frame(verdicts)


@dataclass(frozen=True)
class Artifact:
    """One figure or table: its file stem, the run files it needs, and how it is made."""

    name: str
    kind: Literal["figure", "table"]
    needs: Callable[[RunLayout], tuple[Path, ...]]
    make: Callable[[Path], alt.TopLevelMixin | pd.DataFrame]

    def paths(self, run: RunLayout) -> list[Path]:
        """The files the artifact is written to."""
        if self.kind == "figure":
            return [run.figures / f"{self.name}{s}" for s in FIGURE_SUFFIXES]
        return [run.tables / f"{self.name}{s}" for s in TABLE_SUFFIXES]


def labels_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase1.labeled_json,)


def micro_training_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase1b.results, run.phase1b.correlation)


def correlation_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase1b.correlation,)


def evaluation_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase3.overall,)


def transfer_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase3.transfer,)


def transfer_summary_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase3.transfer_summary,)


def frontier_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase3.overall, run.phase3.retention)


def predictor_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase4.training_result,)


def selection_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.phase5.summary,)


def verdict_files(run: RunLayout) -> tuple[Path, ...]:
    return (run.verdicts,)


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("quadrant_scatter", "figure", labels_files, quadrant_figure),
    Artifact("cpt_validation", "figure", micro_training_files, cpt_figure),
    Artifact("training_matrix_heatmap", "figure", evaluation_files, training_matrix_figure),
    Artifact("transfer_heatmap", "figure", transfer_files, transfer_figure),
    Artifact("reliability_retention_frontier", "figure", frontier_files, frontier_figure),
    Artifact("predictor_metrics", "figure", predictor_files, predictor_figure),
    Artifact("selection", "figure", selection_files, selection_figure),
    Artifact("quadrants", "table", labels_files, quadrant_table),
    Artifact("cpt_validation", "table", correlation_files, cpt_table),
    Artifact("training_matrix", "table", evaluation_files, training_matrix_table),
    Artifact("transfer_summary", "table", transfer_summary_files, transfer_table),
    Artifact("reliability_retention_frontier", "table", frontier_files, frontier_frame),
    Artifact("predictor_metrics", "table", predictor_files, predictor_table),
    Artifact("selection", "table", selection_files, selection_table),
    Artifact("verdicts", "table", verdict_files, verdicts_table),
)


def save_table(table: pd.DataFrame, stem: Path) -> list[Path]:
    """`stem.csv` (the data), `stem.md` (to read) and `stem.tex` (for the paper), numbers to
    three decimals in the last two and missing values as blanks or dashes."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, markdown, latex = (stem.with_suffix(suffix) for suffix in TABLE_SUFFIXES)
    table.to_csv(csv, index=False)
    shown = table.astype(object).where(table.notna(), None)
    markdown.write_text(shown.to_markdown(index=False, floatfmt=".3f") + "\n")
    latex.write_text(table.to_latex(index=False, float_format="%.3f", na_rep="--", escape=True))
    return [csv, markdown, latex]


def build_artifact(artifact: Artifact, run: RunLayout) -> list[Path]:
    """Make one artifact from the run's files and write it; `NothingToShow` when it cannot."""
    missing = [path for path in artifact.needs(run) if not path.is_file()]
    if missing:
        name = missing[0].relative_to(run.folder)
        raise NothingToShow(f"{name} is missing (its phase has not run)")
    made = artifact.make(run)
    stem = artifact.paths(run)[0].with_suffix("")
    if artifact.kind == "figure":
        return save_chart(made, stem)
    return save_table(made, stem)


def build_artifacts(run: RunLayout) -> list[Path]:
    """Every figure and table the run's files allow, written to the run's figures and tables;
    the others are skipped, their old files removed, and the reasons kept in the record.
    Returns the files written."""
    if not run.folder.is_dir():
        raise FileNotFoundError(f"{run.folder} is not a run folder")
    built: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    written: list[Path] = []
    for artifact in ARTIFACTS:
        label = f"{artifact.kind} {artifact.name}"
        try:
            paths = build_artifact(artifact, run)
        except NothingToShow as reason:
            skipped[label] = str(reason)
            for path in artifact.paths(run):
                path.unlink(missing_ok=True)
            continue
        built[label] = [path.relative_to(run.folder).as_posix() for path in paths]
        written += paths
    write_json(run.artifacts, {"built": built, "skipped": skipped})
    return written
