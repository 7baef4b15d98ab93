"""Chart infrastructure: Altair charts rendered offline, in notebooks and to files.

Charts render as static PNG inside notebooks (vl-convert, no CDN), so an executed notebook
reads offline as an HTML report, and `save_chart` writes the same chart as PNG and SVG.
"""

from __future__ import annotations

import io
from pathlib import Path

import altair as alt


def use_offline_charts() -> None:
    """Render Altair charts as embedded PNG (no network) and lift the row limit."""
    alt.renderers.enable("png", scale_factor=1.5)
    alt.data_transformers.disable_max_rows()


def save_chart(chart: alt.TopLevelMixin, stem: Path) -> list[Path]:
    """Write `stem.png` and `stem.svg` without any network."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        chart.save(str(path))
    return paths


def chart_png(chart: alt.TopLevelMixin, scale: float = 1.5) -> bytes:
    """The chart as PNG bytes, for widgets that redraw it (no network, no row limit)."""
    buffer = io.BytesIO()
    with alt.data_transformers.disable_max_rows():
        chart.save(buffer, format="png", scale_factor=scale)
    return buffer.getvalue()
