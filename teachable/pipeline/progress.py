"""Progress bars as plain text in the executed reports.

The package's loops draw their bars with `tqdm.auto`: widgets in a Jupyter kernel, text in a
terminal. An executed notebook read later as a report has no live widgets: a widget bar is an
empty placeholder there (drawing it would need the widget manager, from a CDN). The runner
therefore starts each phase's kernel with `use_text_progress()` run before the first cell
(`kernel_arguments()`), so that the bars are written as text to the cell's stderr and the
report keeps their last state. A notebook opened in JupyterLab is not touched: its bars stay
widgets.
"""

from __future__ import annotations

import tqdm.asyncio
import tqdm.auto
import tqdm.autonotebook


class TextProgress(tqdm.asyncio.tqdm):
    """`tqdm.auto`'s bar drawn as text, redrawn at most once a second by default so that a
    long loop leaves a short report."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("mininterval", 1.0)
        super().__init__(*args, **kwargs)


def text_trange(*args, **kwargs) -> TextProgress:
    return TextProgress(range(*args), **kwargs)


def use_text_progress() -> None:
    """Make `tqdm.auto` (and `tqdm.autonotebook`) draw text bars in this process, for every
    module that imports it from now on or looks it up when it draws a bar."""
    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = TextProgress
        module.trange = text_trange


KERNEL_STARTUP = "import teachable.pipeline.progress as p; p.use_text_progress(); del p"


def kernel_arguments() -> list[str]:
    """Command-line arguments of an IPython kernel that run `use_text_progress()` at start."""
    return [f"--IPKernelApp.exec_lines={KERNEL_STARTUP}"]
