"""Gains: what training did to success, as paired differences over the episodes models played on
shared random streams, and the evaluation tables made of them (overall, per quadrant, retention,
the Q1 against Q2 comparison), each figure with its interval and n. Where the runs include the
shuffled-target control (`CONTROL`), the overall and per-quadrant tables give every other run and
cell its gain over the control too (`gain_vs_control`), paired seed by seed on the same episodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from teachable.measure.intervals import (
    DISCORDANT,
    LEVELS,
    hierarchical_mean,
    negated,
    number,
    wilson,
)
from teachable.measure.verdicts import outcome
from teachable.records.estimate import Estimate
from teachable.records.evaluation import (
    CONTROL,
    MODES,
    RETENTION_DROP_LIMIT,
    Evaluation,
    PlayMode,
    Unit,
)
from teachable.records.selection import MethodResult, PickedLabels
from teachable.records.training_summary import BASE
from teachable.vocabulary import QUADRANTS

COMPARED_QUADRANTS = ("Q1_highU_highL", "Q2_highU_lowL")  # the plan expects Q1 to gain most


def of_suite(episodes: pd.DataFrame, suite: str, mode: PlayMode) -> pd.DataFrame:
    """The episodes of one suite in one play mode."""
    return episodes[(episodes["suite"] == suite) & (episodes["mode"] == mode)]


def outcome_cube(
    episodes: pd.DataFrame, models: Sequence[str], suite: str, mode: PlayMode = "sampled"
) -> np.ndarray:
    """Success (1.0 or 0.0) of each model on each episode of a suite, shaped (models, items,
    episodes): items in sorted key order over every model's episodes in `episodes`, so cubes of
    different models line up; NaN where a model did not play."""
    played = of_suite(episodes, suite, mode)
    keys = sorted(set(played["key"]))
    n_episodes = int(played["episode"].max()) + 1 if len(played) else 0
    cube = np.full((len(models), len(keys), n_episodes), np.nan)
    items = played["key"].map({key: i for i, key in enumerate(keys)}).to_numpy(dtype=int)
    index = played["episode"].to_numpy(dtype=int)
    success = played["success"].to_numpy(dtype=float)
    for m, model in enumerate(models):
        mine = (played["model"] == model).to_numpy()
        cube[m, items[mine], index[mine]] = success[mine]
    return cube


def paired_gain(
    episodes: pd.DataFrame,
    models: Sequence[str],
    reference: Sequence[str],
    suite: str,
    mode: PlayMode = "sampled",
    replicates: str = "seeds",
) -> Estimate:
    """Mean success of `models` minus `reference` on a suite, paired episode by episode, with
    the interval `hierarchical_mean` gives its shape (seeds, items, episodes): over several
    runs (`replicates`, seeds unless named) the crossed t, for one the paired score interval.
    Either side may be one model (the base, set against every run of the other side); else both
    hold as many, paired in order (seed by seed)."""
    if len(models) != len(reference) and 1 not in (len(models), len(reference)):
        raise ValueError(
            f"{len(models)} models against {len(reference)} references: pair one by one or "
            "against a single reference"
        )
    differences = outcome_cube(episodes, models, suite, mode) - outcome_cube(
        episodes, reference, suite, mode
    )
    return hierarchical_mean(differences, replicates=replicates)


def success_rate(
    episodes: pd.DataFrame, models: Sequence[str], suite: str, mode: PlayMode
) -> Estimate:
    """Success over every episode the models played on a suite, with its Wilson interval."""
    played = of_suite(episodes, suite, mode)
    played = played[played["model"].isin(models)]
    return wilson(int(played["success"].sum()), len(played))


def n_items(episodes: pd.DataFrame, suite: str, mode: PlayMode) -> int:
    """How many items of a suite were played."""
    return int(of_suite(episodes, suite, mode)["key"].nunique())


TABLED_SIZES = (*LEVELS, "runs", DISCORDANT)  # the parts of n and counts a table row keeps


def estimate_columns(name: str, estimate: Estimate) -> dict:
    """An estimate as table columns: `name`, `name_low`, `name_high`, `name_n`, one column for
    each part of n and for the discordant count it has (`name_seeds`, `name_items`,
    `name_episodes`, `name_discordant`), and `name_method`."""
    sizes = estimate.parts | estimate.counts
    return {
        name: estimate.value,
        f"{name}_low": estimate.low,
        f"{name}_high": estimate.high,
        f"{name}_n": estimate.n,
        **{f"{name}_{key}": sizes[key] for key in TABLED_SIZES if key in sizes},
        f"{name}_method": estimate.method,
    }


def estimate_in(row: Mapping, name: str) -> Estimate:
    """The estimate `estimate_columns` wrote into a table row."""
    sizes = {
        key: int(row[f"{name}_{key}"])
        for key in TABLED_SIZES
        if f"{name}_{key}" in row and pd.notna(row[f"{name}_{key}"])
    }
    method = row.get(f"{name}_method")
    return Estimate(
        value=number(row[name]),
        low=number(row[f"{name}_low"]),
        high=number(row[f"{name}_high"]),
        n=int(row[f"{name}_n"]),
        method=method if isinstance(method, str) else "",
        parts={key: count for key, count in sizes.items() if key != DISCORDANT},
        counts={key: count for key, count in sizes.items() if key == DISCORDANT},
    )


def in_mode(mode: PlayMode, columns: Mapping) -> dict:
    """A play mode's columns: the sampled ones as they are, the greedy ones as `greedy_...`."""
    prefix = "" if mode == "sampled" else f"{mode}_"
    return {prefix + name: value for name, value in columns.items()}


def modes_of(episodes: pd.DataFrame) -> list[PlayMode]:
    """The play modes the episodes hold, sampled first."""
    return [mode for mode in MODES if (episodes["mode"] == mode).any()]


def control_runs(units: Sequence[Unit]) -> dict[str, str]:
    """Each evaluated run of a cell other than the control, mapped to the control's run of the
    same training seed: the pairs a gain over the control is measured on. Empty without a
    trained control; the base and the control's own runs are never paired."""
    control = {u.seed: u.name for u in units if u.kind == "run" and u.cell == CONTROL and u.runs}
    return {
        u.name: control[u.seed]
        for u in units
        if u.kind == "run" and u.cell != CONTROL and u.runs and u.seed in control
    }


def suite_figures(
    episodes: pd.DataFrame,
    unit: Unit,
    suite: str,
    controls: Mapping[str, str],
) -> dict:
    """A unit's items, success (Wilson) and paired gain over the base on a suite, per mode,
    and its gain over the control on the seeds where `controls` pairs its runs with one."""
    paired = [run for run in unit.runs if run in controls]
    columns = {}
    for mode in modes_of(episodes):
        figures = {
            "n_items": n_items(episodes, suite, mode),
            **estimate_columns("success", success_rate(episodes, unit.runs, suite, mode)),
            **estimate_columns("gain", paired_gain(episodes, unit.runs, [BASE], suite, mode)),
        }
        if paired:
            versus = paired_gain(episodes, paired, [controls[run] for run in paired], suite, mode)
            figures |= estimate_columns("gain_vs_control", versus)
        columns |= in_mode(mode, figures)
    return columns


def overall_table(episodes: pd.DataFrame, units: Sequence[Unit]) -> pd.DataFrame:
    """Success on the held-out tasks and the gain over the base (and over the control), per
    run and per cell; skipped runs and cells keep their row, without numbers."""
    controls = control_runs(units)
    return pd.DataFrame(
        [
            unit.columns() | (suite_figures(episodes, unit, "tasks", controls) if unit.runs else {})
            for unit in units
        ]
    )


def per_quadrant_table(episodes: pd.DataFrame, units: Sequence[Unit]) -> pd.DataFrame:
    """Success from each quadrant's test snapshots and the gain over the base (and over the
    control) there, per evaluated run and cell; every quadrant has a row (no figures where it
    has no snapshot)."""
    controls = control_runs(units)
    rows = []
    for unit in units:
        if not unit.runs:
            continue
        for quadrant in QUADRANTS:
            chosen = episodes[episodes["quadrant"] == quadrant]
            figures = suite_figures(chosen, unit, "snapshots", controls)
            rows.append(unit.columns() | {"eval_quadrant": quadrant} | figures)
    return pd.DataFrame(rows)


def over_control(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a table that carry a gain over the control: none when no run had one."""
    if "gain_vs_control" not in table:
        return table.iloc[:0]
    return table[table["gain_vs_control"].notna()]


def quadrant_comparison(episodes: pd.DataFrame, units: Sequence[Unit]) -> Estimate:
    """How much more success on the held-out tasks the runs trained on Q1 have than those
    trained on Q2, paired by format and seed (the base cancels out of the two gains); each
    (format, seed) pair is one of the `runs` the interval replicates over."""
    first, second = COMPARED_QUADRANTS
    runs = {(u.quadrant, u.format, u.seed): u.name for u in units if u.kind == "run" and u.runs}
    pairs = sorted((f, s) for (q, f, s) in runs if q == first and (second, f, s) in runs)
    return paired_gain(
        episodes,
        [runs[(first, *pair)] for pair in pairs],
        [runs[(second, *pair)] for pair in pairs],
        "tasks",
        replicates="runs",
    )


def retention_table(
    episodes: pd.DataFrame,
    units: Sequence[Unit],
    training_levels: Sequence[str],
) -> pd.DataFrame:
    """Success before (the base) and after (each evaluated run and cell) on the fixed retention
    set, per level and over all, and the paired drop before - after with its interval: negative
    when the run got better. `drop_within_limit` is the three-way outcome of drop < 10 points."""
    retention = episodes[episodes["suite"] == "retention"]
    levels = list(dict.fromkeys(retention["level"]))
    rows = []
    for unit in units:
        if unit.kind == "base" or not unit.runs:
            continue
        for level in [*levels, "all"]:
            chosen = retention if level == "all" else retention[retention["level"] == level]
            row = unit.columns() | {
                "level": level,
                "training_level": None if level == "all" else level in training_levels,
            }
            for mode in modes_of(episodes):
                drop = paired_gain(chosen, [BASE], unit.runs, "retention", mode)
                figures = {
                    "n_items": n_items(chosen, "retention", mode),
                    **estimate_columns("before", success_rate(chosen, [BASE], "retention", mode)),
                    **estimate_columns("after", success_rate(chosen, unit.runs, "retention", mode)),
                    **estimate_columns("drop", drop),
                    "drop_within_limit": outcome(drop, "<", RETENTION_DROP_LIMIT),
                }
                row |= in_mode(mode, figures)
            rows.append(row)
    return pd.DataFrame(rows)


def pooled_episodes(evaluations: Iterable[Evaluation]) -> pd.DataFrame:
    """The episodes of several evaluations in one frame, the base student's (shared by all)
    once."""
    frames = [evaluation.episodes for evaluation in evaluations]
    episodes = pd.concat(frames, ignore_index=True)
    base = episodes["model"] == BASE
    first_base = episodes[base].drop_duplicates(subset=[c for c in episodes if c != "actions"])
    return pd.concat([first_base, episodes[~base]], ignore_index=True)


def method_result(
    episodes: pd.DataFrame,
    ids: Sequence[str],
    seeds: Sequence[int],
    k: int,
    picked: PickedLabels,
) -> MethodResult:
    """One selection method's success, gains and retention drop over its runs `ids`, trained
    at `seeds`, against the base student."""
    tasks = outcome_cube(episodes, ids, "tasks")
    played = tasks[~np.isnan(tasks)]
    base = np.nanmean(outcome_cube(episodes, [BASE], "tasks"))
    per_seed = {run_id: number(np.nanmean(tasks[i]) - base) for i, run_id in enumerate(ids)}
    return MethodResult(
        runs=list(ids),
        seeds=list(seeds),
        k=k,
        success=wilson(int(played.sum()), len(played)),
        gain=paired_gain(episodes, ids, [BASE], "tasks"),
        snapshot_gain=paired_gain(episodes, ids, [BASE], "snapshots"),
        retention_drop=negated(paired_gain(episodes, ids, [BASE], "retention")),
        per_seed_gain=per_seed,
        picked=picked,
    )
