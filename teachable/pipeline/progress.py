"""How a phase's kernel shows its progress: as text in the executed report, and live in the
runner's terminal.

The package's loops draw their bars with `tqdm.auto`: widgets in a Jupyter kernel, text in a
terminal. An executed notebook read later as a report has no live widgets: a widget bar is an
empty placeholder there (drawing it would need the widget manager, from a CDN). The runner
therefore starts each phase's kernel with `use_text_progress()` and `show_each_warning_once()`
run before the first cell (`kernel_arguments()`), so that the bars are written as text to the
cell's stderr, the report keeps their last state, and a warning raised on every pass of a loop
appears once. A notebook opened in JupyterLab is not touched: its bars stay widgets.

The runner hands the kernel's stderr, as the report receives it, to a `TerminalProgress`,
which shows the bars in the runner's own output: one line per bar with tqdm's rate and ETA,
redrawn in place on a terminal, and plain lines in a log (each finished bar, and a running
one at most once a minute).
"""

from __future__ import annotations

import re
import shutil
import time
import warnings
from collections.abc import Callable
from typing import TextIO

import tqdm.asyncio
import tqdm.auto
import tqdm.autonotebook

SCREEN = (76, 50)  # columns of a text bar (its description and figures included), rows


class TextProgress(tqdm.asyncio.tqdm):
    """`tqdm.auto`'s bar drawn as text, redrawn at most once a second by default so that a
    long loop leaves a short report, on a screen of fixed size: the kernel's stderr may still
    be the runner's terminal, whose size (0 x 0 in some, where tqdm draws nothing) is not the
    report's."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("mininterval", 1.0)
        kwargs.setdefault("ncols", SCREEN[0])
        kwargs.setdefault("nrows", SCREEN[1])
        super().__init__(*args, **kwargs)

    def moveto(self, n: int) -> None:
        """Stay on the current line: a nested bar draws over its parent instead of moving the
        cursor, which neither a report nor the runner's output can follow."""


def text_trange(*args, **kwargs) -> TextProgress:
    return TextProgress(range(*args), **kwargs)


def use_text_progress() -> None:
    """Make `tqdm.auto` (and `tqdm.autonotebook`) draw text bars in this process, for every
    module that imports it from now on or looks it up when it draws a bar."""
    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = TextProgress
        module.trange = text_trange


def show_each_warning_once() -> None:
    """Show each warning (its message, category and place) once in this process: code that
    resets the warnings registry on every call (as `warnings.catch_warnings` does) would
    otherwise repeat it in the report on every pass of a loop."""
    shown: set[tuple[str, type[Warning], str, int]] = set()
    show = warnings.showwarning

    def once(message, category, filename, lineno, file=None, line=None) -> None:
        key = (str(message), category, filename, lineno)
        if key not in shown:
            shown.add(key)
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = once


KERNEL_STARTUP = (
    "import teachable.pipeline.progress as p; "
    "p.use_text_progress(); p.show_each_warning_once(); del p"
)


def kernel_arguments() -> list[str]:
    """Command-line arguments of an IPython kernel that run `use_text_progress()` and
    `show_each_warning_once()` at start."""
    return [f"--IPKernelApp.exec_lines={KERNEL_STARTUP}"]


# tqdm's meter ends in `[elapsed<remaining, rate]`, or `[elapsed, rate]` without a total.
METER = re.compile(r"\[\d+:\d{2}(?::\d{2})?(?:<[^,\]]*)?, [^\]]*\]$")
ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SEPARATOR = re.compile(r"([\r\n])")
INDENT = "  "


def meter_of(piece: str) -> str | None:
    """The bar state `piece` draws (escapes and padding left out), or None if it is no bar."""
    text = ESCAPE.sub("", piece).strip()
    return text if METER.search(text) else None


class TerminalProgress:
    """The progress bars of a kernel's stderr, shown in `stream` one line per bar. On a
    terminal (`live`) the bar's line is redrawn in place, left behind when the bar finishes
    and erased when it vanishes (tqdm's `leave=False`); elsewhere (a log, CI) each bar that
    ends is one plain line, its last state, and a running bar prints its state at most once
    every `interval` seconds. Everything else in the stream (warnings, tracebacks) stays in
    the report."""

    def __init__(
        self,
        stream: TextIO,
        live: bool | None = None,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.interval = interval
        self.clock = clock
        self.printed_at = clock()
        self.printed: str | None = None  # the state of the bar on screen printed last
        self.shown: str | None = None  # the state of the bar on screen, until it ends
        self.after_meter = False  # whether the last text seen drew a bar
        self.pending = ""  # text after the last separator that drew no bar (yet)

    def write(self, text: str) -> None:
        """Take a piece of the kernel's stderr: bar states between `\\r` and `\\n`."""
        pieces = SEPARATOR.split(self.pending + text)
        self.pending = "" if meter_of(pieces[-1]) else pieces.pop()
        for piece in pieces:
            self._take(piece)
        self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        """Keep the state of a bar that never ended (its kernel stopped mid-loop)."""
        if self.shown is not None:
            self._end(leave=True)
        self.stream.flush()

    def _take(self, piece: str) -> None:
        if piece == "\n":
            if self.after_meter and self.shown is not None:
                self._end(leave=True)
            self.after_meter = False
        elif piece and piece != "\r":
            meter = meter_of(piece)
            if meter is not None:
                self._draw(meter)
            elif not piece.strip() and self.shown is not None:
                self._end(leave=False)  # tqdm's leave=False writes blanks over its bar
            self.after_meter = meter is not None

    def _draw(self, meter: str) -> None:
        self.shown = meter
        if self.live:
            self.stream.write(f"\r{fit(INDENT + meter)}\x1b[K")
        elif self.clock() - self.printed_at >= self.interval:
            self._print(meter)

    def _end(self, leave: bool) -> None:
        """The bar on screen ended: on a terminal its line stays (`leave`) or goes; in a log its
        last state is printed unless it just was."""
        if self.live:
            self.stream.write("\n" if leave else "\r\x1b[K")
        elif self.shown != self.printed:
            self._print(self.shown)
        self.shown = self.printed = None

    def _print(self, meter: str) -> None:
        self.stream.write(f"{INDENT}{meter}\n")
        self.printed, self.printed_at = meter, self.clock()


def fit(line: str) -> str:
    """`line` cut to the terminal's width, so that redrawing it in place never wraps."""
    width = shutil.get_terminal_size().columns - 1
    return line if len(line) <= width else line[: width - 1] + "…"
