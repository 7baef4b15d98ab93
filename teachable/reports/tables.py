"""Tables as a report shows them: each figure with its interval in one column, `estimate [low,
high]`, beside its n; no row without a figure; no `-0.000`. The frames the package builds keep
separate columns for charts; `shown` is what a notebook displays."""

from __future__ import annotations

import math

import pandas as pd

from teachable.records.estimate import Estimate

ESTIMATE = "estimate [low, high]"


def figure(value: float | None, digits: int = 3) -> str:
    """`0.125`, `n/a` for no figure; never `-0.000`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def interval_text(
    value: float | None, low: float | None, high: float | None, digits: int = 3
) -> str:
    """`0.125 [0.050, 0.200]`; `0.125 [no interval]`; `n/a`."""
    if figure(value) == "n/a":
        return "n/a"
    if figure(low) == "n/a" or figure(high) == "n/a":
        return f"{figure(value, digits)} [no interval]"
    return f"{figure(value, digits)} [{figure(low, digits)}, {figure(high, digits)}]"


def estimate_text(estimate: Estimate) -> str:
    """An estimate as `interval_text` writes it."""
    return interval_text(estimate.value, estimate.low, estimate.high)


def interval_columns(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Each (figure, low, high) triple of the frame's columns: `X` with `X_low` and `X_high`,
    or a `low` (or `ci_low`) and its `high` with the column just before it."""
    columns = list(frame.columns)
    triples = []
    for index, column in enumerate(columns):
        if column in ("low", "ci_low") and index > 0:
            high = column.replace("low", "high")
            if high in columns:
                triples.append((columns[index - 1], column, high))
        elif column.endswith("_low") and column[: -len("_low")] in columns:
            name = column[: -len("_low")]
            if f"{name}_high" in columns:
                triples.append((name, column, f"{name}_high"))
    return triples


def shown(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The frame as a report shows it: every interval triple joined into `X [low, high]` (the
    `estimate [low, high]` of a `value`), rows without any figure dropped, counts as whole
    numbers, other numbers rounded to `digits`."""
    triples = interval_columns(frame)
    if triples:
        figures = [name for name, _, _ in triples]
        frame = frame[frame[figures].notna().any(axis=1)].copy()
    for name, low, high in triples:
        header = ESTIMATE if name == "value" else f"{name} [low, high]"
        frame[name] = [
            interval_text(v, lo, hi, digits)
            for v, lo, hi in zip(frame[name], frame[low], frame[high], strict=True)
        ]
        frame = frame.drop(columns=[low, high]).rename(columns={name: header})
    counts = [c for c in frame.columns if is_count(c) and whole(frame[c])]
    frame = frame.astype({column: "Int64" for column in counts})
    return frame.round(digits).reset_index(drop=True)


def whole(values: pd.Series) -> bool:
    """Float values that are all whole numbers where present."""
    present = values.dropna()
    return pd.api.types.is_float_dtype(values) and bool((present == present.round()).all())


def is_count(column: object) -> bool:
    """`n`, `n_items`, `gain_n`: a count, shown as a whole number even beside missing ones."""
    name = str(column)
    return name == "n" or name.startswith("n_") or name.endswith("_n")
