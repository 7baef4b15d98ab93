"""The colours, spelled once: a quadrant has the same colour in every chart, table and widget
(the threshold plots, the picker, the explorer, Phase 1B's and Phase 2's charts, the paper's
figures), and so has a verdict's outcome (the gates' banners, the forest plots, the index page).
The quadrants take Okabe and Ito's colours, which readers with a colour-vision deficiency tell
apart too; the teachable moments (Q1) are the green."""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt

from teachable.records.verdicts import OUTCOMES, Outcome
from teachable.vocabulary import QUADRANTS, Quadrant

QUADRANT_COLOURS: Mapping[Quadrant, str] = {
    "Q1_highU_highL": "#009E73",
    "Q2_highU_lowL": "#D55E00",
    "Q3_lowU_lowL": "#999999",
    "Q4_lowU_highL": "#0072B2",
}

# Phase 2's cells beside the quadrants: the baselines (all snapshots, random ones) and the
# shuffled-target control.
CELL_COLOURS: Mapping[str, str] = {
    **QUADRANT_COLOURS,
    "all": "#E69F00",
    "random": "#CC79A7",
    "shuffled": "#000000",
}


OUTCOME_COLOURS: Mapping[Outcome, str] = {
    "holds": "#16a34a",
    "fails": "#dc2626",
    "inconclusive": "#d97706",
}


def outcome_colour(title: str = "outcome") -> alt.Color:
    """A colour encoding of the `outcome` field by a verdict's outcome."""
    scale = alt.Scale(domain=list(OUTCOMES), range=[OUTCOME_COLOURS[o] for o in OUTCOMES])
    return alt.Color("outcome:N", scale=scale, title=title)


def outcome_css() -> str:
    """CSS rules `.outcome-holds { background: ... }` for every outcome."""
    return " ".join(f".outcome-{o} {{ background: {c}; }}" for o, c in OUTCOME_COLOURS.items())


def quadrant_colour(field: str = "quadrant", title: str = "quadrant") -> alt.Color:
    """A colour encoding of `field` by quadrant, in the palette's order and colours."""
    scale = alt.Scale(domain=list(QUADRANTS), range=[QUADRANT_COLOURS[q] for q in QUADRANTS])
    return alt.Color(f"{field}:N", scale=scale, title=title)


def cell_colour(field: str = "quadrant", title: str = "cell") -> alt.Color:
    """A colour encoding of `field` by Phase 2 cell: the quadrants in their colours, then the
    baselines and the control."""
    scale = alt.Scale(domain=list(CELL_COLOURS), range=list(CELL_COLOURS.values()))
    return alt.Color(f"{field}:N", scale=scale, title=title)


def quadrant_swatch(quadrant: Quadrant | None) -> str:
    """HTML: a square in the quadrant's colour before its name (`unassigned` without one)."""
    if quadrant is None:
        return "unassigned"
    square = (
        f'<span style="display:inline-block;width:0.8em;height:0.8em;margin-right:0.35em;'
        f'background:{QUADRANT_COLOURS[quadrant]}"></span>'
    )
    return f'<span style="white-space:nowrap">{square}{quadrant}</span>'
